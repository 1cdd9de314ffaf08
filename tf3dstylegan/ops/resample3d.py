"""Affine resampling of volumes [B, X, Y, Z, C] by trilinear interpolation with mirrored borders, in `keras.ops`.

`affine_resample(volumes, matrix, mask)` reads, for every output voxel, the input at matrix @ position
(centred voxel coordinates); positions outside the volume are mirrored at the end voxels' centres
(d c b | a b c d | c b a, scipy's "mirror", PyTorch's "reflect" padding). It is linear in the volumes; on JAX and
PyTorch autodiff differentiates it (to any order: R1 through an augmentation needs second order), on TensorFlow
`resample` and its exact adjoint `resample_adjoint` (one scatter of 8-wide rows) are XLA functions that are each
other's gradient.

`antialiased_resample` does the same without aliasing (as StyleGAN2-ADA's geometric augmentations in 2D): the
volumes are upsampled 2x through a lowpass filter, resampled on the doubled grid, and downsampled 2x through the
same filter, so that what a transform moves above the grid's Nyquist frequency is filtered out instead of folding
back as stripes, and trilinear interpolation's own blur, at half the frequency, is much smaller.
"""
import functools
import math

import numpy as np
from keras import ops
from scipy.signal import firwin

from tf3dstylegan import backend

_CORNERS = [(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]
# The lowpass of the 2x grid: a symmetric 16-tap Kaiser-windowed sinc cut at the native grid's Nyquist frequency
# (gain within 0.5% of 1 up to 0.3 cycles per native voxel, below 3% from 0.7, where upsampling's image starts);
# symmetric and even, so its two polyphase halves sum to 1/2 each and a constant volume stays exactly constant.
LOWPASS = tuple(float(t) for t in firwin(16, 0.5, window=("kaiser", 4.0)))


def reflect(coords, sizes):
    """Voxel coordinates [..., 3] folded into [0, size - 1] by mirroring at the end voxels' centres."""
    folded = ops.mod(coords, 2.0 * (sizes - 1.0))
    return (sizes - 1.0) - ops.abs(folded - (sizes - 1.0))


def trilinear_points(matrix, shape):
    """Where each output voxel reads, for matrix [B, 4, 4] from centred output to centred input voxel
    coordinates: (flat index [B, X, Y, Z] of the lower corner of its cell in a [B*X*Y*Z] volume, the 8
    trilinear corner weights [B, X, Y, Z] in _CORNERS order). Elementwise per axis, so XLA fuses it."""
    X, Y, Z = shape
    grids = [ops.reshape(ops.arange(n, dtype="float32") - (n - 1) / 2.0,
                         [1] + [-1 if a == axis else 1 for a in range(3)])
             for axis, n in enumerate(shape)]                                               # [1, n, 1, 1] per axis
    lower, frac = [], []
    for axis, n in enumerate(shape):
        row = ops.reshape(matrix[:, axis], (-1, 4, 1, 1, 1))
        coord = row[:, 0] * grids[0] + row[:, 1] * grids[1] + row[:, 2] * grids[2] + row[:, 3] + (n - 1) / 2.0
        folded = reflect(coord, float(n))                                                   # [B, X, Y, Z]
        low = ops.minimum(ops.floor(folded), n - 2.0)
        lower.append(ops.cast(low, "int32"))
        frac.append(folded - low)
    batch = ops.reshape(ops.arange(ops.shape(matrix)[0], dtype="int32"), (-1, 1, 1, 1))
    index = ((batch * X + lower[0]) * Y + lower[1]) * Z + lower[2]
    pairs = [(1.0 - f, f) for f in frac]
    return index, [pairs[0][dx] * pairs[1][dy] * pairs[2][dz] for dx, dy, dz in _CORNERS]


def _moved(mask):
    return ops.reshape(mask > 0, (-1, 1, 1, 1, 1))


def resample(volumes, matrix, mask):
    """[B, X, Y, Z, C] -> resampled where mask [B] > 0, unchanged elsewhere (no work when mask is all 0)."""
    def resampled():
        X, Y, Z, C = volumes.shape[1:]
        index, weights = trilinear_points(matrix, (X, Y, Z))
        flat = ops.reshape(volumes, (-1, C))
        out = sum(w[..., None] * ops.take(flat, index + (dx * Y + dy) * Z + dz, axis=0)
                  for w, (dx, dy, dz) in zip(weights, _CORNERS, strict=True))
        return ops.where(_moved(mask), out, volumes)
    return ops.cond(ops.any(mask > 0), resampled, lambda: volumes)


def resample_adjoint(grads, matrix, mask):
    """The transpose of `resample`: the weighted output gradients [B, X, Y, Z, C] added into each voxel's cell
    (one segment sum of 8-wide rows, much faster than 8 scalar scatters), then each corner shifted home."""
    def scattered():
        X, Y, Z, C = grads.shape[1:]
        index, weights = trilinear_points(matrix, (X, Y, Z))
        spread = ops.where(_moved(mask), grads, 0.0)[..., None] * ops.stack(weights, axis=-1)[..., None, :]
        cells = ops.segment_sum(ops.reshape(spread, (-1, C, 8)), ops.reshape(index, (-1,)),
                                num_segments=math.prod(index.shape))
        cells = ops.reshape(cells, (-1, X, Y, Z, C, 8))
        summed = sum(ops.pad(cells[:, :X - dx, :Y - dy, :Z - dz, :, k], [[0, 0], [dx, 0], [dy, 0], [dz, 0], [0, 0]])
                     for k, (dx, dy, dz) in enumerate(_CORNERS))
        return summed + ops.where(_moved(mask), 0.0, grads)
    return ops.cond(ops.any(mask > 0), scattered, lambda: grads)


def affine_resample(volumes, matrix, mask=None):
    """volumes [B, X, Y, Z, C] float32 seen through matrix [B, 4, 4] (centred output -> centred input voxel
    coordinates) by trilinear interpolation with mirrored borders, where mask [B] is 1 (elsewhere unchanged).
    Linear in volumes; the matrix gets no gradient."""
    mask = ops.ones(ops.shape(matrix)[:1]) if mask is None else ops.cast(mask, "float32")
    matrix = ops.stop_gradient(matrix)
    if not backend.is_tensorflow():
        return resample(volumes, matrix, mask)
    return _tensorflow_resample()(volumes, matrix, mask)


@functools.lru_cache(maxsize=1)
def _tensorflow_resample():
    """resample as an XLA function whose gradient is the XLA resample_adjoint (and the other way round)."""
    from tf3dstylegan.backend.tensorflow.ops import linear_with_adjoint
    return linear_with_adjoint(resample, resample_adjoint, jit=True)


def _mirror_pad(x, axis, pad):
    """x padded by `pad` voxels on both ends of `axis`, mirrored at the end voxels' centres (as `reflect`)."""
    n = x.shape[axis]
    if pad < n:
        return ops.pad(x, [[pad, pad] if a == axis else [0, 0] for a in range(len(x.shape))], mode="reflect")
    folded = (n - 1) - np.abs(np.mod(np.arange(-pad, n + pad), 2 * (n - 1)) - (n - 1))   # several folds
    return ops.take(x, folded.astype("int32"), axis=axis)


def _filter_along(x, axis, kernel):
    """Valid correlation along spatial axis `axis` (1, 2 or 3) of x [B, X, Y, Z, C * I] with kernel [K, I, O]
    (NumPy), each channel c alone (its inputs c * I + i, its outputs c * O + o): [B, ..., n - K + 1, ..., C * O]."""
    taps, inputs, outputs = kernel.shape
    channels = x.shape[-1] // inputs
    weights = np.zeros((taps, channels, inputs, channels, outputs), np.float32)   # block-diagonal in c
    for c in range(channels):
        weights[:, c, :, c, :] = kernel
    spatial = [taps if a == axis - 1 else 1 for a in range(3)]
    weights = weights.reshape(spatial + [channels * inputs, channels * outputs])
    return ops.conv(x, ops.convert_to_tensor(weights, x.dtype), padding="valid")


def _split_pairs(x, axis):
    """[B, .., 2m, .., C] -> [B, .., m, .., C * 2]: samples 2j and 2j + 1 of `axis` side by side (channel c * 2 + r)."""
    shape = [-1 if d is None else d for d in x.shape]
    pairs = ops.reshape(x, shape[:axis] + [shape[axis] // 2, 2] + shape[axis + 1:])
    return ops.reshape(ops.moveaxis(pairs, axis + 1, -1), shape[:axis] + [shape[axis] // 2] + shape[axis + 1:-1]
                       + [shape[-1] * 2])


def _merge_pairs(x, axis):
    """The inverse of _split_pairs: [B, .., m, .., C * 2] -> [B, .., 2m, .., C]."""
    shape = [-1 if d is None else d for d in x.shape]
    pairs = ops.moveaxis(ops.reshape(x, shape[:-1] + [shape[-1] // 2, 2]), -1, axis + 1)
    return ops.reshape(pairs, shape[:axis] + [2 * shape[axis]] + shape[axis + 1:-1] + [shape[-1] // 2])


def upsample2x(x, axis, taps=LOWPASS):
    """x [B, X, Y, Z, C] -> 2n samples on spatial axis `axis` (1, 2, 3): zero insertion and the lowpass (gain 2 per
    axis). The new samples 2i and 2i + 1 lie at i - 1/4 and i + 1/4 of the old voxel i, so the doubled grid is
    centred as the old one: output 2m + r reads x[m + o] through tap k where o = (r - k + L/2 - 1) / 2 is an
    integer (the two polyphase kernels: one convolution with two outputs per channel)."""
    half = len(taps) // 2
    pad = half // 2
    kernel = np.zeros((2 * pad + 1, 1, 2), np.float32)                     # [window, input, phase]
    for r in (0, 1):
        for k, tap in enumerate(taps):
            if (r - k + half - 1) % 2 == 0:
                kernel[pad + (r - k + half - 1) // 2, 0, r] = 2.0 * tap
    return _merge_pairs(_filter_along(_mirror_pad(x, axis, pad), axis, kernel), axis)


def downsample2x(x, axis, taps=LOWPASS):
    """x [B, X, Y, Z, C] with 2n samples on spatial axis `axis` -> n: the lowpass, then every second sample; output
    i is centred on inputs 2i and 2i + 1 (the inverse grid of upsample2x): y[i] = sum_k taps[k] x[2i + 1 - L/2 + k],
    i.e. with p = x mirrored by L/2 less one voxel each side, taps[2q + r] on p[2(i + q) + r] (polyphase)."""
    half = len(taps) // 2
    padded = _mirror_pad(x, axis, half)                                    # padded[j + L/2] = x[j]
    inner = [slice(None)] * 5
    inner[axis] = slice(1, -1)
    kernel = np.array(taps, np.float32).reshape(half, 2, 1)                # [q, r, output]
    return _filter_along(_split_pairs(padded[tuple(inner)], axis), axis, kernel)


_DOUBLED_SHIFT = np.array([[1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1]], np.float32)


def antialiased_resample(volumes, matrix, mask=None):
    """affine_resample without aliasing: volumes [B, X, Y, Z, C] float32 upsampled 2x (lowpass), seen through matrix
    [B, 4, 4] (centred output -> centred input voxel coordinates of the native grid; on the doubled grid its shift
    doubles), downsampled 2x (lowpass), where mask [B] is 1 (elsewhere unchanged; no work when none is)."""
    mask = ops.ones(ops.shape(matrix)[:1]) if mask is None else ops.cast(mask, "float32")
    doubled = ops.stop_gradient(matrix) * _DOUBLED_SHIFT  # made outside the branch: TensorFlow's adjoint keeps it
    resample_on_grid = _tensorflow_resample() if backend.is_tensorflow() else resample

    def filtered():
        up = volumes
        for axis in (1, 2, 3):
            up = upsample2x(up, axis)                                      # [B, 2X, 2Y, 2Z, C]
        moved = resample_on_grid(up, doubled, mask)
        for axis in (1, 2, 3):
            moved = downsample2x(moved, axis)                              # [B, X, Y, Z, C]
        return ops.where(_moved(mask), moved, volumes)
    return ops.cond(ops.any(mask > 0), filtered, lambda: volumes)
