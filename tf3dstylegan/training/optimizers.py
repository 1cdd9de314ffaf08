"""Lazy regularisation (which phases a step runs, Adam's adjustment) and the G_ema decay: the same on every
backend's training step."""
import keras


def lazy_factor(interval):
    """c = interval / (interval + 1) for lazy regularisation (1 when regularising every step)."""
    return 1.0 if interval is None else interval / (interval + 1.0)


def make_optimizer(lr, beta1, beta2, epsilon, interval, precision):
    """Adam with lazy regularisation's adjustment (lr * c, beta ** c); loss-scaled for float16."""
    c = lazy_factor(interval)
    opt = keras.optimizers.Adam(learning_rate=lr * c, beta_1=beta1 ** c, beta_2=beta2 ** c, epsilon=epsilon)
    return keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt


def ema_beta(batch_size, ema_kimg):
    """Per-step G_ema decay for a half-life of ema_kimg thousand images."""
    return 0.5 ** (batch_size / (ema_kimg * 1000.0)) if ema_kimg > 0 else 0.0


# fold_in tags of a phase's augmentation draws (far above the number of other draws of a phase).
AUGMENT_G_FAKES, AUGMENT_D_REALS, AUGMENT_D_FAKES = 1001, 1002, 1003


def has_d_reg(cfg):
    """Whether D has a gradient penalty (R1 on reals or R2 on fakes)."""
    return cfg.d_loss != "logistic"


def regularisation_due(cfg, step):
    """(lazy G reg, lazy D reg) due at this step (0-based): every g_reg_interval / d_reg_interval steps (never when
    the interval is None: then the term joins every main step)."""
    g_int, d_int = cfg.g_reg_interval, cfg.d_reg_interval
    g_reg = cfg.pl_weight > 0 and g_int is not None and step % g_int == 0
    d_reg = has_d_reg(cfg) and d_int is not None and step % d_int == 0
    return g_reg, d_reg
