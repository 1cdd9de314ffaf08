"""Adam with lazy regularisation's adjustment and the G_ema decay: the same on every backend."""
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
