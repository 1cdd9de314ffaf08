"""The original's 3D FIR resampling ops, channels-last and exact, in `keras.ops`.

The 5x5x5 FIR kernel is the outer product of `[1,3,3,3,1]` with itself three times, normalised to sum
1, so it is applied as three 1-D depthwise passes: exact, and far leaner than the original's dense
5x5x5 convolution on channel-folded tensors. Quirks kept for checkpoint
compatibility: the up-sampling gain is 4 (not 8), the up-sampling convolution reverses its kernel on
the first two spatial axes only, `upsample3d` repeats samples (nearest) before filtering, and
`downsample3d` pads (3, 1). On TensorFlow the filter's gradient is its adjoint (nothing kept for the backward
pass; `tf3dstylegan.backend.tensorflow.ops.linear_with_adjoint`).
"""
import numpy as np
from keras import ops

from tf3dstylegan import backend

RESAMPLE_KERNEL = (1, 3, 3, 3, 1)
UP_GAIN = 4.0  # the original's gain * factor**2 (2-D value, kept)
SPATIAL_AXES = (1, 2, 3)


def fir_taps(kernel=RESAMPLE_KERNEL) -> np.ndarray:
    """1-D taps whose 3-D outer product is the original's normalised FIR kernel."""
    taps = np.asarray(kernel, dtype=np.float64)
    return taps / taps.sum()


def _fir_along_axis(x, taps, axis, pad):
    """Zero-pad by `pad` and VALID-filter with 1-D taps along one spatial axis.

    x: [B, X, Y, Z, C] -> the same with that axis n + pad[0] + pad[1] - len(taps) + 1. Runs as a
    depthwise 2-D convolution on a free reshape ([B, X, Y, Z*C] or [B, X*Y, Z, C]): no transposes,
    no per-tap temporaries.
    """
    _, sx, sy, sz, c = ops.shape(x)
    if axis == 3:
        x2, window, channels, padded = ops.reshape(x, (-1, sx * sy, sz, c)), (1, len(taps)), c, 2
    else:
        x2, channels, padded = ops.reshape(x, (-1, sx, sy, sz * c)), sz * c, 1 if axis == 1 else 2
        window = (len(taps), 1) if axis == 1 else (1, len(taps))
    pads = [[0, 0]] * 4
    pads[padded] = list(pad)
    kernel = np.tile(np.reshape(taps, window + (1, 1)), (1, 1, channels, 1))   # [kh, kw, channels, 1]
    y = padded_depthwise_conv2d(x2, ops.cast(kernel, x.dtype), pads)
    out = [-1, sx, sy, sz, c]
    out[axis] += pad[0] + pad[1] - len(taps) + 1
    return ops.reshape(y, out)


@backend.tensorflow_variant("padded_depthwise_conv2d")
def padded_depthwise_conv2d(x, kernel, pads):
    """Zero-pad x [B, H, W, C] by pads [[0, 0], [top, bottom], [left, right], [0, 0]], then VALID depthwise 2-D
    convolution with kernel [kh, kw, C, 1] -> [B, H', W', C]. (On TensorFlow the padding is the convolution's
    own: no padded copy.)"""
    return ops.depthwise_conv(ops.pad(x, pads), kernel, strides=1, padding="valid")


def _separable_fir3d(x, taps, pad, gain):
    for axis in SPATIAL_AXES:
        x = _fir_along_axis(x, taps * gain if axis == SPATIAL_AXES[0] else taps, axis, pad)
    return x


def fir3d(x, pad=(0, 0), gain=1.0, kernel=RESAMPLE_KERNEL):
    """Zero-pad every spatial axis by `pad`, then VALID-filter with the separable 3-D FIR kernel * gain.

    x: [B, X, Y, Z, C] -> [B, X', Y', Z', C] with X' = X + pad[0] + pad[1] - len(kernel) + 1.
    The filter is linear: its gradient is its adjoint (the reversed kernel with complementary pads).
    """
    taps, pad = fir_taps(kernel), tuple(int(p) for p in pad)
    if not backend.is_tensorflow():
        return _separable_fir3d(x, taps, pad, gain)
    from tf3dstylegan.backend.tensorflow.ops import linear_with_adjoint
    adjoint_pad = (len(taps) - 1 - pad[0], len(taps) - 1 - pad[1])
    return linear_with_adjoint(lambda v: _separable_fir3d(v, taps, pad, gain),
                               lambda v: _separable_fir3d(v, taps[::-1], adjoint_pad, gain))(x)


def _along(axis, index):
    """An indexing tuple that takes `index` along one axis of a rank-5 tensor."""
    return tuple(index if a == axis else slice(None) for a in range(5))


def zero_insert(x):
    """Put the samples at even positions of a zero grid: [B, X, Y, Z, C] -> [B, 2X-1, 2Y-1, 2Z-1, C]."""
    for axis in SPATIAL_AXES:
        shape = list(ops.shape(x))
        length = shape[axis]
        shape[0], shape[axis] = -1, 2 * length
        x = ops.reshape(ops.stack([x, ops.zeros_like(x)], axis=axis + 1), shape)
        x = x[_along(axis, slice(0, 2 * length - 1))]
    return x


def _up_pads(kernel_size, num_taps):
    # Pads between the transposed convolution and the FIR so the output is exactly 2x.
    p = (num_taps - 2) - (kernel_size - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


def conv3d_same(x, w):
    """Stride-1 SAME cross-correlation. x: [B, X, Y, Z, I], w: [k, k, k, I, O] -> [B, X, Y, Z, O]."""
    return ops.conv(x, w, strides=1, padding="same")


def upsample_conv3d(x, w, kernel=RESAMPLE_KERNEL):
    """The original's up-sample + convolution (G `Conv0_up`, G resnet `Skip`).

    x: [B, X, Y, Z, I], w: [k, k, k, I, O] -> [B, 2X, 2Y, 2Z, O].
    Equals: zero-insert to 2X-1, pad k-1, cross-correlate with w flipped on its third axis (the original
    reverses two of three axes before its transposed convolution), then pad and filter with 4 * FIR.
    """
    k = int(w.shape[0])
    # The transposed convolution flips all three axes, so its filter is w reversed on axes 0 and 1.
    w_t = ops.transpose(ops.flip(w, axis=(0, 1)), (0, 1, 2, 4, 3))  # [k, k, k, O, I]
    _, sx, sy, sz, _ = ops.shape(x)
    y = ops.conv_transpose(x, w_t, strides=2, padding="valid")       # [B, 2X + max(k - 2, 0), ..., O]
    if k < 2:  # without Keras' trailing zero row (k >= 2 has none)
        y = y[:, :2 * sx + k - 2, :2 * sy + k - 2, :2 * sz + k - 2]
    return fir3d(y, pad=_up_pads(k, len(kernel)), gain=UP_GAIN, kernel=kernel)


def conv_downsample3d(x, w, kernel=RESAMPLE_KERNEL):
    """The original's FIR + strided convolution (D `Conv1_down`, D `Skip`).

    x: [B, X, Y, Z, I], w: [k, k, k, I, O] -> [B, floor((X-2)/2)+1, ..., O] (X/2 for even X).
    """
    k = int(w.shape[0])
    p = (len(kernel) - 2) + (k - 1)
    y = fir3d(x, pad=((p + 1) // 2, p // 2), kernel=kernel)
    return ops.conv(y, w, strides=2, padding="valid")


def upsample3d(x, kernel=RESAMPLE_KERNEL):
    """The original's FIR up-sampling (G skip): nearest repeat, pad (3, 1), 4 * FIR.

    x: [B, X, Y, Z, C] -> [B, 2X, 2Y, 2Z, C]; a constant is multiplied by 4.
    """
    for axis in SPATIAL_AXES:
        x = ops.repeat(x, 2, axis=axis)
    return fir3d(x, pad=(3, 1), gain=UP_GAIN, kernel=kernel)


def downsample3d(x, kernel=RESAMPLE_KERNEL):
    """The original's FIR down-sampling (D skip): pad (3, 1), FIR, keep even samples.

    x: [B, X, Y, Z, C] -> [B, ceil(X/2), ceil(Y/2), ceil(Z/2), C].
    """
    y = fir3d(x, pad=(3, 1), kernel=kernel)
    return y[:, ::2, ::2, ::2, :]
