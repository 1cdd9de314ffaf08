"""Loss terms against hand computations, and the training step's reported losses on tiny networks."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import load_config
from tf3dstylegan.backend.tensorflow import step
from tf3dstylegan.training import losses, optimizers


def softplus(x):
    return np.log1p(np.exp(x))


def test_g_nonsaturating_is_softplus_of_minus_logit():
    logits = np.array([[-2.0], [0.0], [3.5]], np.float32)
    np.testing.assert_allclose(losses.g_nonsaturating(logits).numpy(), softplus(-logits[:, 0]), rtol=1e-6)


def test_d_logistic_sums_fake_and_real_terms():
    real, fake = np.array([[1.0], [-0.5]], np.float32), np.array([[0.25], [2.0]], np.float32)
    expected = softplus(fake[:, 0]) + softplus(-real[:, 0])
    np.testing.assert_allclose(losses.d_logistic(real, fake).numpy(), expected, rtol=1e-6)


def test_gradient_penalty_of_a_linear_critic_sums_all_four_axes():
    # D(x) = sum(w * x): dD/dx = w for every sample, so R1 = gamma/2 * sum(w^2) over X, Y, Z and C.
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1, 2, 3, 4, 2)).astype(np.float32)
    x = tf.constant(rng.normal(size=(3, 2, 3, 4, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(x * w)
    penalty = losses.gradient_penalty(tape.gradient(total, x), gamma=10.0).numpy()
    np.testing.assert_allclose(penalty, np.full(3, 5.0 * np.sum(w ** 2)), rtol=1e-5)
    only_last = np.zeros((1, 2, 3, 4, 2), np.float32)
    only_last[0, 1, 2, 3, 1] = 2.0  # the original's R2 dropped the last spatial axis; ours must not
    np.testing.assert_allclose(losses.gradient_penalty(only_last, gamma=1.0).numpy(), [2.0])


def test_path_length_terms_by_hand():
    g = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 10
    expected = np.sqrt(np.mean(np.sum(g ** 2, axis=2), axis=1))
    lengths = losses.path_lengths(g).numpy()
    np.testing.assert_allclose(lengths, expected, rtol=1e-6)
    new_mean = float(losses.updated_pl_mean(0.5, lengths.mean(), 0.01))
    np.testing.assert_allclose(new_mean, 0.5 + 0.01 * (expected.mean() - 0.5), rtol=1e-6)
    np.testing.assert_allclose(losses.path_length_penalty(tf.constant(lengths), new_mean, 2.0).numpy(),
                               2.0 * (expected - new_mean) ** 2, rtol=1e-5)


def test_path_length_probe_scale_is_one_over_sqrt_voxels():
    assert losses.path_length_scale((4, 8, 10, 12, 1)) == pytest.approx(1.0 / np.sqrt(8 * 10 * 12), rel=1e-12)


def test_lazy_regularisation_adjusts_adam_and_ema_half_life():
    opt = optimizers.make_optimizer(0.002, 0.0, 0.99, 1e-8, interval=16, precision="float32")
    c = 16 / 17
    np.testing.assert_allclose(float(opt.learning_rate), 0.002 * c, rtol=1e-6)
    np.testing.assert_allclose(opt.beta_2, 0.99 ** c, rtol=1e-7)
    assert opt.beta_1 == 0.0
    plain = optimizers.make_optimizer(0.002, 0.0, 0.99, 1e-8, interval=None, precision="float32")
    np.testing.assert_allclose(float(plain.learning_rate), 0.002, rtol=1e-6)
    loss_scaled = optimizers.make_optimizer(0.002, 0, 0.99, 1e-8, 4, "mixed_float16")
    assert isinstance(loss_scaled, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(optimizers.ema_beta(8, 10.0), 0.999446, atol=1e-6)  # original: mb 8 -> 0.999446


def tiny_config(**overrides):
    fields = dict(base_size=(2, 2, 3), resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
                  mapping_fmaps=8, mapping_layers=2, batch_size=4, style_mixing_prob=0.0, no_noise=True)
    fields.update(overrides)
    return load_config("2mm-fd16", **fields)


@pytest.mark.slow
def test_step_reports_hand_computed_losses_and_moves_weights_by_sgd():
    """Tiny networks, plain SGD: loss/G and loss/D equal the hand formulas and the weights move by -lr * grad."""
    from tf3dstylegan.networks import build_discriminator, build_generator
    cfg = tiny_config(g_reg_interval=4, d_loss="logistic_r1", d_reg_interval=4, d_gamma=10.0)
    keras.utils.set_random_seed(3)
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    lr = 0.01
    rng = tf.random.Generator.from_seed(7)
    reals = tf.constant(np.random.default_rng(1).uniform(-1, 1, (4, *cfg.img_shape, 1)).astype(np.float32))
    train_step = step.TrainStep(cfg, tf.distribute.get_strategy(), G, D, G_ema, keras.optimizers.SGD(lr),
                                keras.optimizers.SGD(lr), rng, tf.Variable(0.0), 4)
    # Replay the step's draws (lazy regularisation, step without it): G latents, a seed, then D latents.
    replay = tf.random.Generator.from_state(rng.state.numpy(), rng.algorithm)
    z_g = replay.normal([4, cfg.latent_size])
    replay.make_seeds(1)
    z_d = replay.normal([4, cfg.latent_size])
    with tf.GradientTape() as tape:
        expected_g = tf.reduce_mean(tf.nn.softplus(-D(G.synthesis(G.mapping(z_g)))))
    g_grads = tape.gradient(expected_g, G.trainable_variables)
    g_expected = [v.numpy() - lr * g.numpy() for v, g in zip(G.trainable_variables, g_grads)]
    d_before = [v.numpy() for v in D.trainable_variables]

    out = {k: float(v) for k, v in train_step(reals, 1).items()}  # step 1: no lazy regularisation

    assert "loss/D_reg" not in out and "loss/G_reg" not in out
    np.testing.assert_allclose(out["loss/G"], float(expected_g), rtol=1e-5)
    for var, expected in zip(G.trainable_variables, g_expected):
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-4, atol=1e-6)
    d_after = [v.numpy() for v in D.trainable_variables]
    for var, value in zip(D.trainable_variables, d_before):
        var.assign(value)
    fakes = G.synthesis(G.mapping(z_d))  # the updated G makes the D step's fakes
    with tf.GradientTape() as tape:
        expected_d = tf.reduce_mean(tf.nn.softplus(D(fakes)) + tf.nn.softplus(-D(reals)))
    d_grads = tape.gradient(expected_d, D.trainable_variables)
    np.testing.assert_allclose(out["loss/D"], float(expected_d), rtol=1e-5)
    for after, before, grad in zip(d_after, d_before, d_grads):
        np.testing.assert_allclose(after, before - lr * grad.numpy(), rtol=1e-4, atol=1e-6)

    out = {k: float(v) for k, v in train_step(reals, 4).items()}  # step 4: lazy G and D regularisation
    np.testing.assert_allclose(out["pl_mean"], 0.01 * out["pl_length"], rtol=1e-5)  # pl_mean started at 0
    assert out["loss/G_reg"] > 0 and out["loss/D_reg"] > 0


@pytest.mark.slow
def test_r1_in_the_step_matches_the_penalty_of_the_real_discriminator():
    """Step with only the lazy D reg phase: loss/D_reg = interval * mean(gamma/2 |dD/dreals|^2)."""
    from tf3dstylegan.networks import build_discriminator, build_generator
    cfg = tiny_config(g_reg_interval=None, pl_weight=0.0, d_loss="logistic_r1", d_reg_interval=4, d_gamma=3.0)
    keras.utils.set_random_seed(4)
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    reals = tf.constant(np.random.default_rng(2).uniform(-1, 1, (4, *cfg.img_shape, 1)).astype(np.float32))
    train_step = step.TrainStep(cfg, tf.distribute.get_strategy(), G, D, G_ema, keras.optimizers.SGD(0.0),
                                keras.optimizers.SGD(0.0), tf.random.Generator.from_seed(1), tf.Variable(0.0), 4)
    with tf.GradientTape() as tape:
        tape.watch(reals)
        total = tf.reduce_sum(D(reals))
    grads = tape.gradient(total, reals).numpy()
    expected = 4 * np.mean(1.5 * np.sum(grads ** 2, axis=(1, 2, 3, 4)))
    out = train_step(reals, 0)
    np.testing.assert_allclose(float(out["loss/D_reg"]), expected, rtol=1e-4)
