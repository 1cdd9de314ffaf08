"""Anti-aliased affine resampling (2x up, trilinear on the doubled grid, 2x down): its filters, what a sub-voxel
shift and back keeps of a band-limited volume (against the model of its frequency response, and against trilinear
resampling at the native grid), its gradient, and its use in the augmentation pipe."""
import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.ops.resample3d import LOWPASS, affine_resample, antialiased_resample, downsample2x, upsample2x
from tf3dstylegan.training import augment

TAPS = np.array(LOWPASS)
SHIFT = np.array([0.3, -0.45, 0.2])  # voxels: a different sub-voxel phase on each axis


def lowpass_gain(f):
    """|H(f)| of the lowpass at f cycles per sample of the grid it filters (real: the taps are symmetric)."""
    k = np.arange(len(TAPS)) - (len(TAPS) - 1) / 2
    return np.abs(np.sum(TAPS * np.cos(2 * np.pi * np.asarray(f)[..., None] * k), -1))


def linear_round_trip_gain(d, f):
    """Amplitude kept by linear interpolation at fractional offset d, then at 1 - d (a shift and back), of a wave of
    f cycles per sample: |1 - d + d e^{2 pi i f}|^2 (the phases cancel)."""
    return np.abs(1 - d + d * np.exp(2j * np.pi * f)) ** 2


def plane_waves(shape, fmax, count=24, seed=0):
    """(frequencies [K, 3] with |f_axis| <= fmax, phases [K], gains [K] -> the sum of the waves on the grid)."""
    rng = np.random.default_rng(seed)
    freqs, phases = rng.uniform(-fmax, fmax, (count, 3)), rng.uniform(0, 2 * np.pi, count)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)             # [X, Y, Z, 3]
    waves = np.cos(2 * np.pi * grid @ freqs.T + phases)                                          # [X, Y, Z, K]
    return freqs, lambda gains: (waves @ gains).astype(np.float32)[None, ..., None]


def shift_matrix(t):
    matrix = np.eye(4, dtype=np.float32)
    matrix[:3, 3] = t
    return tf.constant(matrix[None])


INTERIOR = (0, *(slice(8, -8),) * 3, 0)  # away from the mirrored borders (plane waves do not mirror)


def rms(a):
    return float(np.sqrt(np.mean(np.asarray(a)[INTERIOR] ** 2)))


def test_the_filters_keep_constants_and_put_the_doubled_grid_at_quarter_voxels():
    ones = tf.ones((2, 6, 5, 7, 1))
    for axis in (1, 2, 3):  # a constant stays constant: each polyphase half of the symmetric taps sums to 1/2
        up = upsample2x(ones, axis)
        assert up.shape[axis] == 2 * ones.shape[axis]
        np.testing.assert_allclose(up.numpy(), 1.0, atol=1e-6)
        np.testing.assert_allclose(downsample2x(up, axis).numpy(), 1.0, atol=1e-6)
    f, n = 0.15, 48
    wave = np.cos(2 * np.pi * f * np.arange(n)).astype(np.float32)[None, :, None, None, None]
    up = upsample2x(tf.constant(wave), 1).numpy()[0, :, 0, 0, 0]
    at = np.arange(2 * n) / 2 - 0.25  # sample j of the doubled grid lies at j / 2 - 1/4 of the native grid
    # The wave through the passband plus its image at 1 - f through the stopband (float32 rounding far below).
    bound = abs(1 - lowpass_gain(f / 2)) + lowpass_gain((1 - f) / 2) + 1e-5
    assert np.abs(up - np.cos(2 * np.pi * f * at))[8:-8].max() <= bound
    assert bound < 0.01
    down = downsample2x(tf.constant(up[None, :, None, None, None]), 1).numpy()[0, :, 0, 0, 0]
    assert np.abs(down - wave[0, :, 0, 0, 0])[8:-8].max() <= abs(1 - lowpass_gain(f / 2) ** 2) + 2 * bound


def test_a_sub_voxel_shift_and_back_keeps_a_band_limited_volume():
    """A volume of plane waves up to 0.2 cycles per voxel on each axis (0.4 of Nyquist), shifted by SHIFT and back.
    Each wave comes back scaled by the round trip's frequency response: on the doubled grid, linear interpolation
    at the doubled shift's fractional offsets d (|1 - d + d e^{i pi f}|^2 per axis) times the lowpass' passband
    (|H(f / 2)|^4 per axis: up and down, twice); at the native grid, linear interpolation at offsets SHIFT mod 1 at
    2 pi f. The anti-aliased result is that model up to the images the filters leave (<= 3% twice: 1e-3), and
    so loses at most the model's loss, 7.9% of the RMS here, where trilinear resampling at the native grid
    loses 30%."""
    freqs, volume_of = plane_waves((32, 32, 32), fmax=0.2)
    volume = volume_of(np.ones(len(freqs)))
    native = affine_resample(affine_resample(volume, shift_matrix(SHIFT)), shift_matrix(-SHIFT)).numpy()
    filtered = antialiased_resample(antialiased_resample(volume, shift_matrix(SHIFT)), shift_matrix(-SHIFT)).numpy()
    f = np.abs(freqs)                                                                            # [K, 3]
    native_gain = np.prod(linear_round_trip_gain(np.mod(SHIFT, 1), f), 1)
    filtered_gain = np.prod(linear_round_trip_gain(np.mod(2 * SHIFT, 1), f / 2) * lowpass_gain(f / 2) ** 4, 1)
    scale = rms(volume)
    assert rms(native - volume_of(native_gain)) <= 1e-5 * scale  # the native model is exact (float32 rounding)
    assert rms(filtered - volume_of(filtered_gain)) <= 1e-3 * scale
    predicted_loss = rms(volume_of(filtered_gain) - volume) / scale
    assert predicted_loss < 0.08
    filtered_loss, native_loss = rms(filtered - volume) / scale, rms(native - volume) / scale
    assert filtered_loss <= predicted_loss + 1e-3
    assert native_loss > 3 * filtered_loss


@pytest.mark.slow
def test_unmasked_samples_are_untouched_and_the_gradient_is_the_adjoint_to_second_order():
    rng = np.random.default_rng(1)
    x, u = (tf.constant(rng.uniform(-1, 1, (2, 8, 9, 10, 2)).astype(np.float32)) for _ in range(2))
    rotation = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    matrix = np.stack([np.eye(4, dtype=np.float32)] * 2)
    matrix[0, :3, :3], matrix[0, :3, 3] = rotation * 1.1, [0.4, -1.3, 2.2]
    mask = tf.constant([1.0, 0.0])
    np.testing.assert_array_equal(antialiased_resample(x, matrix, mask).numpy()[1], x.numpy()[1])
    np.testing.assert_array_equal(antialiased_resample(x, matrix, tf.zeros(2)).numpy(), x.numpy())
    with tf.GradientTape() as outer:
        outer.watch(u)
        with tf.GradientTape() as inner:
            inner.watch(x)
            inner_product = tf.reduce_sum(antialiased_resample(x, matrix, mask) * u)
        adjoint_u = inner.gradient(inner_product, x)  # A^T u
        cubic = tf.reduce_sum(adjoint_u ** 3)
    np.testing.assert_allclose(float(tf.reduce_sum(x * adjoint_u)), float(inner_product), rtol=1e-4)
    second = outer.gradient(cubic, u)  # d/du sum((A^T u)^3) = A (3 (A^T u)^2)
    np.testing.assert_allclose(second.numpy(), antialiased_resample(3 * adjoint_u ** 2, matrix, mask).numpy(),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", augment.GEOMETRIC)
def test_the_pipe_moves_on_voxels_exactly_and_off_them_within_the_filters_gain(name):
    x = tf.constant(np.random.default_rng(2).uniform(-1, 1, (4, 8, 10, 12, 1)).astype(np.float32))
    y = augment.AugmentPipe(name, mode="fixed", p=1.0)(x, tf.constant([3, 7], tf.int64)).numpy()
    if name in ("xflip", "xint"):  # whole voxels: every output voxel is an input voxel
        assert np.isin(y, x.numpy()).all()
    else:  # |y| <= the linear operator's largest row sum of |weights| (filters and trilinear) times max |x|
        row_sum = (2 * np.abs(TAPS[0::2]).sum()) ** 3 * np.abs(TAPS).sum() ** 3
        assert np.abs(y).max() <= row_sum * np.abs(x.numpy()).max()
        assert not np.isin(y, x.numpy()).all()
