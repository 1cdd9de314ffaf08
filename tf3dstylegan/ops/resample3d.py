"""Affine resampling of volumes [B, X, Y, Z, C] by trilinear interpolation with mirrored borders.

`affine_resample(volumes, matrix, mask)` reads, for every output voxel, the input at matrix @ position
(centred voxel coordinates); positions outside the volume are mirrored at the end voxels' centres
(d c b | a b c d | c b a, scipy's "mirror", PyTorch's "reflect" padding). It is linear in the volumes and its
gradient is the exact adjoint, itself differentiable (R1 through an augmentation needs second order). Both
directions are XLA functions: 8 gathers forward, one scatter of 8-wide rows backward.
"""
import tensorflow as tf

_CORNERS = [(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]


def reflect(coords, sizes):
    """Voxel coordinates [..., 3] folded into [0, size - 1] by mirroring at the end voxels' centres."""
    folded = tf.math.floormod(coords, 2.0 * (sizes - 1.0))
    return (sizes - 1.0) - tf.abs(folded - (sizes - 1.0))


def trilinear_points(matrix, shape):
    """Where each output voxel reads, for matrix [B, 4, 4] from centred output to centred input voxel
    coordinates: (flat index [B, X, Y, Z] of the lower corner of its cell in a [B*X*Y*Z] volume, the 8
    trilinear corner weights [B, X, Y, Z] in _CORNERS order). Elementwise per axis, so XLA fuses it."""
    X, Y, Z = shape
    grids = [tf.reshape(tf.range(n, dtype=tf.float32) - (n - 1) / 2.0, [1] + [-1 if a == axis else 1 for a in range(3)])
             for axis, n in enumerate(shape)]                                               # [1, n, 1, 1] per axis
    lower, frac = [], []
    for axis, n in enumerate(shape):
        row = tf.reshape(matrix[:, axis], [-1, 4, 1, 1, 1])
        coord = row[:, 0] * grids[0] + row[:, 1] * grids[1] + row[:, 2] * grids[2] + row[:, 3] + (n - 1) / 2.0
        folded = reflect(coord, float(n))                                                   # [B, X, Y, Z]
        low = tf.minimum(tf.floor(folded), n - 2.0)
        lower.append(tf.cast(low, tf.int32))
        frac.append(folded - low)
    batch = tf.reshape(tf.range(tf.shape(matrix)[0]), [-1, 1, 1, 1])
    index = ((batch * X + lower[0]) * Y + lower[1]) * Z + lower[2]
    pairs = [(1.0 - f, f) for f in frac]
    return index, [pairs[0][dx] * pairs[1][dy] * pairs[2][dz] for dx, dy, dz in _CORNERS]


@tf.function(jit_compile=True)
def _resample(volumes, matrix, mask):
    # [B, X, Y, Z, C] -> resampled where mask [B] > 0, unchanged elsewhere (no work when mask is all 0).
    def resampled():
        X, Y, Z, C = volumes.shape[1:]
        index, weights = trilinear_points(matrix, (X, Y, Z))
        flat = tf.reshape(volumes, [-1, C])
        out = tf.add_n([w[..., None] * tf.gather(flat, index + (dx * Y + dy) * Z + dz)
                        for w, (dx, dy, dz) in zip(weights, _CORNERS)])
        return tf.where(tf.reshape(mask > 0, [-1, 1, 1, 1, 1]), out, volumes)
    return tf.cond(tf.reduce_any(mask > 0), resampled, lambda: volumes)


@tf.function(jit_compile=True)
def _resample_adjoint(grads, matrix, mask):
    # The transpose of _resample: the weighted output gradients [B, X, Y, Z, C] added into each voxel's
    # cell (one scatter of 8-wide rows, much faster than 8 scalar scatters), then each corner shifted home.
    def scattered():
        X, Y, Z, C = grads.shape[1:]
        index, weights = trilinear_points(matrix, (X, Y, Z))
        moved = tf.reshape(mask > 0, [-1, 1, 1, 1, 1])
        spread = tf.where(moved, grads, 0.0)[..., None] * tf.stack(weights, axis=-1)[..., None, :]
        cells = tf.math.unsorted_segment_sum(tf.reshape(spread, [-1, C, 8]), tf.reshape(index, [-1]),
                                             tf.size(index))
        cells = tf.reshape(cells, [-1, X, Y, Z, C, 8])
        summed = tf.add_n([tf.pad(cells[:, :X - dx, :Y - dy, :Z - dz, :, k],
                                  [[0, 0], [dx, 0], [dy, 0], [dz, 0], [0, 0]])
                           for k, (dx, dy, dz) in enumerate(_CORNERS)])
        return summed + tf.where(moved, 0.0, grads)
    return tf.cond(tf.reduce_any(mask > 0), scattered, lambda: grads)


@tf.custom_gradient
def _apply_resample(volumes, matrix, mask):
    return _resample(volumes, matrix, mask), lambda dy: (_apply_adjoint(dy, matrix, mask), None, None)


@tf.custom_gradient
def _apply_adjoint(grads, matrix, mask):
    return _resample_adjoint(grads, matrix, mask), lambda dv: (_apply_resample(dv, matrix, mask), None, None)


def affine_resample(volumes, matrix, mask=None):
    """volumes [B, X, Y, Z, C] float32 seen through matrix [B, 4, 4] (centred output -> centred input voxel
    coordinates) by trilinear interpolation with mirrored borders, where mask [B] is 1 (elsewhere unchanged).

    Linear in volumes; its gradient is the exact adjoint (to any order). One XLA kernel each way."""
    mask = tf.ones(tf.shape(matrix)[:1]) if mask is None else tf.cast(mask, tf.float32)
    return _apply_resample(volumes, tf.stop_gradient(matrix), mask)
