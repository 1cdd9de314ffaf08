"""Every pure op against the independent NumPy implementation (channels-first) on small, odd sizes."""
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
from tf3dstylegan import ops


def to_cl(x):     # [N, C, X, Y, Z] -> [N, X, Y, Z, C]
    return np.transpose(x, (0, 2, 3, 4, 1))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 2)])
def test_upsample_conv3d(rng, k, shape):
    x = rng.standard_normal((2, 3) + shape)
    w = rng.standard_normal((k, k, k, 3, 4))
    got = ops.upsample_conv3d(tf.constant(to_cl(x), tf.float32), tf.constant(w, tf.float32)).numpy()
    expected = to_cl(ref.upsample_conv(x, w))
    assert got.shape == (2,) + tuple(2 * s for s in shape) + (4,)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_upsample_conv3d_reverses_two_kernel_axes_only(rng):
    """An asymmetric kernel tells the quirk apart from a full 3-D reversal."""
    x = rng.standard_normal((1, 1, 3, 3, 3))
    w = rng.standard_normal((3, 3, 3, 1, 1))
    got = ops.upsample_conv3d(tf.constant(to_cl(x), tf.float32), tf.constant(w, tf.float32)).numpy()
    full_flip = to_cl(ref.fir(ref.pad(ref.xcorr(ref.pad(ref.zero_insert(x), 2, 2), w), 2, 1), 4.0))
    assert np.abs(got - full_flip).max() > 1e-2


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("shape", [(6, 8, 10), (5, 7, 4)])
def test_conv_downsample3d(rng, k, shape):
    x = rng.standard_normal((2, 3) + shape)
    w = rng.standard_normal((k, k, k, 3, 2))
    got = ops.conv_downsample3d(tf.constant(to_cl(x), tf.float32), tf.constant(w, tf.float32)).numpy()
    np.testing.assert_allclose(got, to_cl(ref.conv_downsample(x, w)), atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 1, 3)])
def test_upsample3d_and_downsample3d(rng, shape):
    x = rng.standard_normal((2, 2) + shape)
    up = ops.upsample3d(tf.constant(to_cl(x), tf.float32)).numpy()
    np.testing.assert_allclose(up, to_cl(ref.upsample(x)), atol=1e-5)
    down = ops.downsample3d(tf.constant(to_cl(x), tf.float32)).numpy()
    np.testing.assert_allclose(down, to_cl(ref.downsample(x)), atol=1e-5)


def test_upsample3d_gain_is_four_inside():
    """Nearest repetition then gain 4: a constant becomes 4x away from the borders."""
    up = ops.upsample3d(tf.ones([1, 6, 6, 6, 1])).numpy()
    np.testing.assert_allclose(up[0, 4:-4, 4:-4, 4:-4, 0], 4.0, rtol=1e-5)


def test_fir3d_matches_dense_kernel(rng):
    x = rng.standard_normal((1, 2, 7, 6, 5))
    got = ops.fir3d(tf.constant(to_cl(x), tf.float32), pad=(2, 2), gain=3.0).numpy()
    np.testing.assert_allclose(got, to_cl(ref.fir(ref.pad(x, 2, 2), 3.0)), atol=1e-5)


def test_zero_insert(rng):
    x = rng.standard_normal((2, 3, 2, 4, 3))
    np.testing.assert_array_equal(ops.zero_insert(tf.constant(to_cl(x))).numpy(), to_cl(ref.zero_insert(x)))


def test_bias_act():
    x = np.array([[-2.0, 0.5], [1.0, -0.25]], np.float32)
    b = np.array([0.5, -1.0], np.float32)
    got = ops.bias_act(x, b, "lrelu", lrmul=0.5).numpy()
    np.testing.assert_allclose(got, ref.lrelu(x + b * 0.5), rtol=1e-6)
    np.testing.assert_allclose(ops.bias_act(x, b).numpy(), x + b)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, b, "gelu")


@pytest.mark.parametrize("batch", [8, 4, 2, 1])
def test_minibatch_stddev(rng, batch):
    x = rng.standard_normal((batch, 3, 2, 3, 2))
    got = ops.minibatch_stddev(tf.constant(to_cl(x), tf.float32), group_size=4).numpy()
    np.testing.assert_allclose(got, to_cl(ref.mbstd(x, 4)), atol=1e-5)


def test_minibatch_stddev_rejects_indivisible_batch(rng):
    with pytest.raises(ValueError, match="multiple of the group size"):
        ops.minibatch_stddev(tf.zeros([6, 2, 2, 2, 1]))


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv3d_fused_and_reference(rng, up, demodulate):
    x = rng.standard_normal((3, 4, 3, 2, 3))
    w = rng.standard_normal((3, 3, 3, 4, 5)) / np.sqrt(27 * 4)
    styles = rng.standard_normal((3, 4)) + 1
    v = {"s/weight": w * np.sqrt(27 * 4), "s/mod_weight": np.eye(4) * 2.0, "s/mod_bias": np.zeros(4)}
    wvec = (styles - 1) / 1.0
    expected = to_cl(ref.modconv(x, v, "s", wvec, up=up, demod=demodulate))
    args = (tf.constant(to_cl(x), tf.float32), tf.constant(w, tf.float32), tf.constant(styles, tf.float32))
    plain = ops.apply_demodulation(*ops.modulated_conv3d(*args, demodulate=demodulate, up=up)).numpy()
    fused = ops.apply_demodulation(*ops.modulated_conv3d(*args, demodulate=demodulate, up=up, fused=True)).numpy()
    np.testing.assert_allclose(plain, expected, atol=1e-4)
    np.testing.assert_allclose(fused, plain, atol=1e-4)


def test_style_scales_and_normalize(rng):
    w = rng.standard_normal((2, 6)).astype(np.float32)
    mod_weight = rng.standard_normal((6, 3)).astype(np.float32)
    mod_bias = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(ops.style_scales(w, mod_weight, mod_bias).numpy(),
                               w @ (mod_weight / np.sqrt(6)) + mod_bias + 1, rtol=1e-5)
    z = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_allclose(ops.normalize_2nd_moment(z).numpy(),
                               z / np.sqrt((z ** 2).mean(1, keepdims=True) + 1e-8), rtol=1e-5)


def test_custom_gradients_match_autodiff_to_second_order(rng):
    """fir3d (adjoint gradient) and lrelu bias_act (output-only gradient) against plain TF autodiff,
    through a gradient penalty as R1 / path length use it."""
    x = tf.constant(rng.standard_normal((1, 3, 4, 2, 2)))
    w = tf.Variable(rng.standard_normal((3, 3, 3, 2, 2)))
    b = tf.Variable([0.3, -0.2], dtype=tf.float64)
    taps = ops.fir_taps()
    dense_fir = np.einsum("i,j,k->ijk", taps, taps, taps)[..., None, None] * 4.0

    def plain(x):
        y = tf.nn.conv3d_transpose(x, tf.transpose(w[::-1, ::-1], [0, 1, 2, 4, 3]), [1, 7, 9, 5, 2],
                                   [1, 2, 2, 2, 1], "VALID")
        y = tf.pad(y, [[0, 0], [2, 1], [2, 1], [2, 1], [0, 0]])
        y = tf.concat([tf.nn.conv3d(y[..., c:c + 1], dense_fir, [1] * 5, "VALID") for c in range(2)], -1)
        return tf.nn.leaky_relu(y + b, 0.2) * np.sqrt(2)

    def ours(x):
        return ops.bias_act(ops.upsample_conv3d(x, w), b, "lrelu")

    results = []
    for fn in (plain, ours):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                out = tf.reduce_sum(tf.sin(fn(x)))
            penalty = tf.reduce_sum(inner.gradient(out, x) ** 2)
        results.append([penalty.numpy()] + [g.numpy() for g in outer.gradient(penalty, [w, b])])
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def _second_order(fn, x, params):
    """[penalty, d penalty / d params...] for penalty = |d sum(sin(fn(x))) / dx|^2 (as R1 / path length)."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            out = tf.reduce_sum(tf.sin(fn(x)))
        penalty = tf.reduce_sum(inner.gradient(out, x) ** 2)
    return [penalty.numpy()] + [g.numpy() for g in outer.gradient(penalty, params)]


def _assert_all_close(got, expected):
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("noise_batch", [1, 2])
def test_fused_modulated_layer_gradients_match_autodiff(rng, noise_batch):
    """Modulated conv (input kept, not x * s) + demodulation + noise + bias + lrelu (output kept) against
    plain autodiff, to second order, with respect to weight, styles, noise, strength and bias."""
    x = tf.constant(rng.standard_normal((2, 4, 3, 5, 3)))
    params = [tf.Variable(rng.standard_normal((3, 3, 3, 3, 4)) * 0.3), tf.Variable(rng.standard_normal((2, 3)) + 1),
              tf.Variable(rng.standard_normal((noise_batch, 4, 3, 5, 1))), tf.Variable(0.7, dtype=tf.float64),
              tf.Variable(rng.standard_normal(4) * 0.1)]

    def plain(x):
        w, styles, noise, strength, bias = params
        y = tf.nn.conv3d(x * styles[:, None, None, None, :], w, [1] * 5, "SAME")
        y = y * tf.cast(ops.demodulation_coefficients(w, styles), y.dtype)[:, None, None, None, :]
        return tf.nn.leaky_relu(y + noise * strength + bias, 0.2) * np.sqrt(2)

    def ours(x):
        w, styles, noise, strength, bias = params
        y, demod = ops.modulated_conv3d(x, w, styles)
        return ops.bias_lrelu(y, bias, scale=demod, noise=noise, strength=strength)

    _assert_all_close(_second_order(ours, x, params), _second_order(plain, x, params))


def test_conv_downsample3d_gradients_match_autodiff(rng):
    """FIR (adjoint gradient) + strided convolution, as D's down-sampling layers, to second order."""
    x = tf.constant(rng.standard_normal((2, 6, 5, 4, 2)))
    w = tf.Variable(rng.standard_normal((3, 3, 3, 2, 3)))
    taps = ops.fir_taps()
    dense_fir = np.einsum("i,j,k->ijk", taps, taps, taps)[..., None, None]

    def plain(x):
        y = tf.pad(x, [[0, 0], [3, 2], [3, 2], [3, 2], [0, 0]])
        y = tf.concat([tf.nn.conv3d(y[..., c:c + 1], dense_fir, [1] * 5, "VALID") for c in range(2)], -1)
        return tf.nn.conv3d(y, w, [1, 2, 2, 2, 1], "VALID")

    _assert_all_close(_second_order(lambda x: ops.conv_downsample3d(x, w), x, [w]), _second_order(plain, x, [w]))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_fused_bias_lrelu_in_half_precision_matches_float32(rng, dtype):
    """Half-precision values with float32 sums in the backward pass: close to the float32 result."""
    x = rng.standard_normal((2, 5, 4, 3, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (2, 3)).astype(np.float32)
    noise = rng.standard_normal((2, 5, 4, 3, 1)).astype(np.float32)
    bias, strength = np.float32([0.1, -0.2, 0.3]), np.float32(0.5)
    results = []
    for dt in ("float32", dtype):
        args = [tf.constant(a, dt) for a in (x, bias, scale, noise, strength)]
        with tf.GradientTape() as tape:
            tape.watch(args)
            y = ops.bias_lrelu(args[0], args[1], scale=args[2], noise=args[3], strength=args[4])
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * np.linspace(-1, 1, y.shape[-1], dtype=np.float32))
        assert y.dtype == dt
        results.append([tf.cast(t, tf.float32).numpy() for t in [y] + tape.gradient(loss, args)])
    tolerance = 0.03 if dtype == "bfloat16" else 0.005
    for half, full in zip(results[1], results[0]):
        np.testing.assert_allclose(half, full, rtol=tolerance, atol=tolerance * np.abs(full).max())
