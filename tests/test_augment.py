"""3D adaptive discriminator augmentation: the resampler, each transform, the adaptive p, the training step."""
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from tf3dstylegan import load_config
from tf3dstylegan.ops.resample3d import affine_resample
from tf3dstylegan.training import augment
from tf3dstylegan.backend.tensorflow.step import TrainStep

REPO = Path(__file__).resolve().parent.parent
TINY = dict(base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2, batch_size=4, style_mixing_prob=0.0, no_noise=True)
SEED = tf.constant([3, 7], tf.int64)


def volumes(shape=(4, 8, 10, 12, 1), seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


def affine(linear, shift):
    matrix = np.eye(4, dtype=np.float32)
    matrix[:3, :3], matrix[:3, 3] = linear, shift
    return matrix


def test_pipelines_name_their_transforms():
    assert augment.parse_pipeline("bgc") == ("xint", "scale", "rotate", "aniso", "xfrac", "gamma", "brightness",
                                             "contrast")
    assert augment.parse_pipeline("bgcfnox") == augment.TRANSFORMS
    assert augment.parse_pipeline("noise") == ("noise",)
    assert augment.parse_pipeline("rotate,gamma") == ("rotate", "gamma")
    assert "xflip" not in augment.parse_pipeline("bgcfno")  # left-right flips only on request
    for bad in ("bgcc", "q", "", "rotate,twist"):
        with pytest.raises(ValueError, match="augmentation pipeline"):
            augment.parse_pipeline(bad)
    assert augment.build_augment("none") is None
    with pytest.raises(ValueError, match="needs p"):
        augment.build_augment("fixed")
    assert augment.build_augment("ada", "bg").mode == "ada"


@pytest.mark.slow
def test_resample_matches_scipy_mirror_mode_and_leaves_unmasked_samples_alone():
    v = volumes((2, 7, 8, 9, 2))
    linear = np.array([[0.9, 0.3, -0.2], [-0.25, 1.1, 0.1], [0.15, -0.1, 0.95]], np.float32)
    shift = np.array([1.7, -2.3, 6.1], np.float32)  # far enough to read mirrored voxels
    out = affine_resample(v, tf.constant(np.stack([affine(linear, shift)] * 2)), tf.constant([1.0, 0.0])).numpy()
    centre = (np.array([7, 8, 9]) - 1) / 2
    expected = np.stack([scipy.ndimage.affine_transform(v.numpy()[0, ..., c], linear, order=1, mode="mirror",
                                                        offset=centre - linear @ centre + shift) for c in range(2)], -1)
    np.testing.assert_allclose(out[0], expected, atol=2e-5)
    np.testing.assert_array_equal(out[1], v.numpy()[1])


@pytest.mark.slow
def test_resample_gradient_is_its_exact_adjoint_to_second_order():
    x, u = volumes((2, 7, 8, 9, 2), 1), volumes((2, 7, 8, 9, 2), 2)  # the shape above: compiled once
    rotation = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    matrix = tf.constant(np.stack([affine(rotation * 1.2, [0.4, -1.3, 2.2]), np.eye(4, dtype=np.float32)]))
    mask = tf.constant([1.0, 0.0])
    with tf.GradientTape() as outer:
        outer.watch(u)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = affine_resample(x, matrix, mask)
            inner_product = tf.reduce_sum(y * u)
        grad = inner.gradient(inner_product, x)  # S^T u
        cubic = tf.reduce_sum(grad ** 3)
    np.testing.assert_allclose(float(tf.reduce_sum(x * grad)), float(inner_product), rtol=1e-5)
    second = outer.gradient(cubic, u)  # d/du sum((S^T u)^3) = S (3 (S^T u)^2)
    np.testing.assert_allclose(second.numpy(), affine_resample(3 * grad ** 2, matrix, mask).numpy(), atol=1e-5)


def test_bias_field_is_the_quadratic_polynomial_of_its_coefficients():
    coeffs = np.random.default_rng(5).normal(size=(2, 9)).astype(np.float32)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in (4, 5, 6)], indexing="ij")
    terms = [x, y, z, x * x - (x * x).mean(), y * y - (y * y).mean(), z * z - (z * z).mean(), x * y, x * z, y * z]
    expected = np.einsum("bk,kxyz->bxyz", coeffs, np.stack(terms))
    np.testing.assert_allclose(augment.log_bias_field(tf.constant(coeffs), (4, 5, 6)).numpy()[..., 0], expected,
                               atol=1e-5)


@pytest.mark.parametrize("name", augment.TRANSFORMS)
def test_each_transform_is_the_identity_at_p0_and_changes_the_volume_at_p1(name):
    x = volumes()
    pipe = augment.AugmentPipe(name, mode="fixed", p=0.0)
    np.testing.assert_array_equal(pipe(x, SEED).numpy(), x.numpy())
    pipe.p.assign(1.0)
    y = pipe(x, SEED).numpy()
    assert np.all(np.isfinite(y)) and np.abs(y - x.numpy()).max() > 0.05
    np.testing.assert_array_equal(pipe(x, SEED).numpy(), y)  # stateless: the seed decides
    assert np.abs(pipe(x, SEED + 1).numpy() - y).max() > 0
    if name in ("xflip", "xint"):  # whole-voxel moves never leave the input's range (the lowpass of the others
        # overshoots: tests/test_resample_antialiased.py bounds it)
        assert x.numpy().min() - 1e-6 <= y.min() and y.max() <= x.numpy().max() + 1e-6


def test_half_of_the_samples_are_augmented_at_p_half_and_dtype_is_kept():
    x = volumes((64, 4, 4, 4, 1))
    pipe = augment.AugmentPipe("brightness", mode="fixed", p=0.5)
    changed = np.any(pipe(x, SEED).numpy() != x.numpy(), axis=(1, 2, 3, 4))
    assert 20 <= changed.sum() <= 44
    half = pipe(tf.cast(x, tf.bfloat16), SEED)
    assert half.dtype == tf.bfloat16


def test_adaptive_p_moves_toward_the_target_at_ada_speed():
    pipe = augment.AugmentPipe("bgc", mode="ada", target=0.6, interval=4, kimg=500)
    step_size = 8 * 4 / 500_000  # batch 8, every 4 steps
    for step in range(4):  # r_t = 0.75 > target: D overfits, p rises once per interval
        assert pipe.update(0.5 if step % 2 else 1.0, step, 8) is None or step == 3
    np.testing.assert_allclose(pipe.p.numpy(), step_size, rtol=1e-6)
    for step in range(4, 8):  # r_t = 0.2 < target: p falls, clipped at 0
        pipe.update(0.2, step, 8)
    assert pipe.p.numpy() == 0.0
    for step in range(8, 12):
        pipe.update(-0.1, step, 8)
    assert pipe.p.numpy() == 0.0
    full = augment.AugmentPipe("bg", mode="ada", p=1.0, interval=1)
    full.update(1.0, 0, 4)
    assert full.p.numpy() == 1.0  # clipped at 1
    fixed = augment.AugmentPipe("bg", mode="fixed", p=0.3)
    for step in range(8):
        fixed.update(1.0, step, 8)
    np.testing.assert_allclose(fixed.p.numpy(), 0.3)


def test_p_and_the_accumulators_survive_a_checkpoint(tmp_path):
    pipe = augment.AugmentPipe("bgc", interval=4, kimg=0.1)
    for step in range(6):  # stop in the middle of an interval
        pipe.update(1.0, step, 4)
    path = tf.train.Checkpoint(augment=tf.train.Checkpoint(**pipe.variables)).write(str(tmp_path / "ckpt"))
    resumed = augment.AugmentPipe("bgc", interval=4, kimg=0.1)
    tf.train.Checkpoint(augment=tf.train.Checkpoint(**resumed.variables)).read(path).assert_consumed()
    assert [v.numpy() for v in resumed.variables.values()] == [v.numpy() for v in pipe.variables.values()]
    for step in (6, 7):  # the interval finishes as if never interrupted: r_t = (1 + 1 + 0.3 + 0.3) / 4 > 0.6
        pipe.update(0.3, step, 4)
        resumed.update(0.3, step, 4)
    assert resumed.p.numpy() == pipe.p.numpy() == pytest.approx(0.32)  # 4 * 4 / 100 per interval


def tiny_networks(cfg, seed=0, **kwargs):
    from tf3dstylegan.networks import build_discriminator, build_generator
    keras.utils.set_random_seed(seed)
    return build_generator(cfg, **kwargs), build_discriminator(cfg, **kwargs), build_generator(cfg)


@pytest.mark.slow
def test_gradients_reach_G_through_the_pipe():
    cfg = load_config("2mm-fd16", **TINY)
    G, D, _ = tiny_networks(cfg)
    z = tf.random.stateless_normal([4, cfg.latent_size], [0, 1])
    pipe = augment.AugmentPipe("bgcfno", mode="fixed", p=1.0)

    def g_grads(through):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.softplus(-D(through(G(z, training=True)))))
        return tape.gradient(loss, G.trainable_variables)
    augmented, plain = g_grads(lambda fake: pipe(fake, SEED)), g_grads(lambda fake: fake)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in augmented)
    assert sum(np.abs(g.numpy()).max() > 0 for g in augmented) > len(augmented) // 2
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(augmented, plain)) > 1e-6


def make_step(cfg, augment_pipe, lr=0.0, seed=0, loss_scale=False, **network_kwargs):
    G, D, G_ema = tiny_networks(cfg, seed, **network_kwargs)

    def opt():
        sgd = keras.optimizers.SGD(lr)
        return keras.optimizers.LossScaleOptimizer(sgd) if loss_scale else sgd
    return TrainStep(cfg, tf.distribute.get_strategy(), G, D, G_ema, opt(), opt(),
                     tf.random.Generator.from_seed(5), tf.Variable(0.0), 4, augment=augment_pipe)


def stub_discriminator(D, logit):
    """D(x) = logit for every input: zero output weights, the output bias set to logit."""
    kernel, bias = D.output_layer.trainable_variables
    kernel.assign(tf.zeros_like(kernel))
    bias.assign(tf.fill(bias.shape, logit))


@pytest.mark.slow
def test_step_with_a_pipe_at_p0_is_the_plain_step_and_a_stubbed_D_moves_p():
    cfg = load_config("2mm-fd16", **TINY, g_reg_interval=2, d_loss="logistic_r1", d_reg_interval=2)
    reals = volumes((4, *cfg.img_shape, 1), 3)
    pipe = augment.AugmentPipe("bgcfno", "ada", p=0.0, interval=2, kimg=1.0)
    plain, piped = make_step(cfg, None, lr=0.01), make_step(cfg, pipe, lr=0.01)
    a, b = plain(reals, 0), piped(reals, 0)  # step 0: G, G reg, D, D reg (R1 through the pipe)
    assert set(b) == set(a) | {"aug/p", "aug/rt"}
    for key in a:
        assert float(a[key]) == float(b[key]), key
    for v, w in zip(plain.G.variables + plain.D.variables, piped.G.variables + piped.D.variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy())

    for logit, start, steps in ((5.0, 0.0, (1,)), (-5.0, 0.5, (2, 3))):  # r_t = +1 > 0.6, then -1 < 0.6
        stub_discriminator(piped.D, logit)
        pipe.p.assign(start)
        pipe.rt_sum.assign(0.0)
        pipe.rt_count.assign(0)
        for step in steps:
            out = {k: float(v) for k, v in piped(reals, step).items()}
            assert out["aug/rt"] == np.sign(logit) and out["aug/p"] == start  # the p this step used
        # odd steps close an interval of 2: p moves by batch 4 * 2 / 1000 toward the target
        np.testing.assert_allclose(pipe.p.numpy(), start + np.sign(logit) * 0.008, rtol=1e-5)


@pytest.mark.slow
def test_step_with_the_pipe_under_mixed_precision_and_gradient_checkpointing():
    cfg = load_config("2mm-fd16", **TINY, g_reg_interval=2, d_loss="logistic_r1", d_reg_interval=2)
    reals = volumes((4, *cfg.img_shape, 1), 4)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        pipe = augment.AugmentPipe("bgcfno", "fixed", 1.0)
        # Loss scaling skips non-finite updates: this tiny G's bfloat16 gradients can overflow without a pipe too.
        train_step = make_step(cfg, pipe, 0.01, loss_scale=True, gradient_checkpointing=True)
        out = {k: float(v) for k, v in train_step(reals, 0).items()}  # both lazy regularisers run
        G = train_step.G
        fakes = G.synthesis(G.training_styles(tf.random.stateless_normal([4, cfg.latent_size], [0, 1])),
                            noise_mode="random")
        augmented = pipe(fakes, SEED)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert fakes.dtype == augmented.dtype and augmented.shape == fakes.shape
    assert all(np.isfinite(out[k]) for k in ("loss/G", "loss/D", "loss/D_reg", "aug/rt")) and out["loss/D_reg"] > 0
    assert out["aug/p"] == 1.0 and abs(out["aug/rt"]) <= 1.0


MIRRORED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tf3dstylegan import load_config
from tf3dstylegan.networks import build_discriminator, build_generator
from tf3dstylegan.training.augment import AugmentPipe
from tf3dstylegan.backend.tensorflow.step import TrainStep

cfg = load_config("2mm-fd16", **json.loads(sys.argv[1]), batch_size=8, mbstd_group_size=1)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
with strategy.scope():
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    g_opt, d_opt = keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0)
    pl_mean = tf.Variable(0.0, synchronization=tf.VariableSynchronization.ON_WRITE,
                          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    pipe = AugmentPipe("bc", "ada", p=0.5, interval=2, kimg=1.0)  # p is the point; the whole pipe: tests above
kernel, bias = D.output_layer.trainable_variables
kernel.assign(tf.zeros_like(kernel))
bias.assign(tf.fill(bias.shape, 3.0))
step = TrainStep(cfg, strategy, G, D, G_ema, g_opt, d_opt, tf.random.Generator.from_seed(1), pl_mean, 8,
                 augment=pipe)
volumes = np.random.default_rng(0).uniform(-1, 1, (8, *cfg.img_shape, 1)).astype(np.float32)
data = strategy.distribute_datasets_from_function(
    lambda ctx: tf.data.Dataset.from_tensor_slices(volumes).repeat().batch(ctx.get_per_replica_batch_size(8)))
it = iter(data)
out = [{k: float(v) for k, v in step(next(it), i).items()} for i in range(4)]
print("RESULT" + json.dumps({"stats": out, "p": [float(v) for v in strategy.experimental_local_results(pipe.p.value)],
                              "replicas": strategy.num_replicas_in_sync}))
"""


@pytest.mark.slow
def test_p_is_identical_on_two_mirrored_replicas():
    fields = {k: v for k, v in TINY.items() if k != "batch_size"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED, json.dumps(fields)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["replicas"] == 2
    assert [s["aug/rt"] for s in result["stats"]] == [1.0] * 4  # both replicas' samples, averaged
    p0, p1 = result["p"]
    assert p0 == p1
    np.testing.assert_allclose(p0, 0.5 + 2 * 8 * 2 / 1000, rtol=1e-5)  # two intervals of 2 steps, batch 8
