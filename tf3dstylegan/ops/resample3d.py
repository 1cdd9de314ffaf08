"""Affine resampling of volumes [B, X, Y, Z, C] by trilinear interpolation with mirrored borders, in `keras.ops`.

`affine_resample(volumes, matrix, mask)` reads, for every output voxel, the input at matrix @ position
(centred voxel coordinates); positions outside the volume are mirrored at the end voxels' centres
(d c b | a b c d | c b a, scipy's "mirror", PyTorch's "reflect" padding). It is linear in the volumes; on JAX and
PyTorch autodiff differentiates it (to any order: R1 through an augmentation needs second order), on TensorFlow
`resample` and its exact adjoint `resample_adjoint` (one scatter of 8-wide rows) are XLA functions that are each
other's gradient.
"""
import functools
import math

from keras import ops

from tf3dstylegan import backend

_CORNERS = [(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]


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
