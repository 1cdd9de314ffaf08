"""The original's 3D FIR resampling ops, channels-last and exact.

The 5x5x5 FIR kernel is the outer product of `[1,3,3,3,1]` with itself three times, normalised to sum
1, so it is applied as three 1-D depthwise passes: exact, and far leaner than the original's dense
5x5x5 convolution on channel-folded tensors. Quirks kept for checkpoint
compatibility: the up-sampling gain is 4 (not 8), the up-sampling convolution reverses its kernel on
the first two spatial axes only, `upsample3d` repeats samples (nearest) before filtering, and
`downsample3d` pads (3, 1).
"""
import numpy as np
import tensorflow as tf

RESAMPLE_KERNEL = (1, 3, 3, 3, 1)
UP_GAIN = 4.0  # the original's gain * factor**2 (2-D value, kept)
SPATIAL_AXES = (1, 2, 3)


def fir_taps(kernel=RESAMPLE_KERNEL) -> np.ndarray:
    """1-D taps whose 3-D outer product is the original's normalised FIR kernel."""
    taps = np.asarray(kernel, dtype=np.float64)
    return taps / taps.sum()


def _dims(x):
    """Static sizes where known, dynamic otherwise: [B, X, Y, Z, C]."""
    dynamic = tf.shape(x)
    return [x.shape[i] if x.shape[i] is not None else dynamic[i] for i in range(5)]


def _slice_axis(x, axis, start, length):
    """x[..., start:start+length, ...] along one axis of a rank-5 tensor."""
    begin = [0] * 5
    size = [-1] * 5
    begin[axis], size[axis] = start, length
    return tf.slice(x, begin, size)


def _fir_along_axis(x, taps, axis, pad):
    """Zero-pad by `pad` and VALID-filter with 1-D taps along one spatial axis.

    x: [B, X, Y, Z, C] -> the same with that axis n + pad[0] + pad[1] - len(taps) + 1. Runs as a
    depthwise 2-D convolution on a free reshape ([B, X, Y, Z*C] or [B, X*Y, Z, C]): no transposes,
    no per-tap temporaries.
    """
    b, sx, sy, sz, c = _dims(x)
    if axis == 3:
        x2, window, channels = tf.reshape(x, [b, sx * sy, sz, c]), (1, len(taps)), c
    else:
        x2, channels = tf.reshape(x, [b, sx, sy, sz * c]), sz * c
        window = (len(taps), 1) if axis == 1 else (1, len(taps))
    pads = [[0, 0], [0, 0], [0, 0], [0, 0]]
    pads[1 if axis == 1 else 2] = list(pad)
    kernel = tf.tile(tf.reshape(tf.constant(taps, x.dtype), window + (1, 1)), [1, 1, channels, 1])
    y = tf.nn.depthwise_conv2d(x2, kernel, strides=[1, 1, 1, 1], padding=pads)
    out = [b, sx, sy, sz, c]
    out[axis] = -1
    return tf.reshape(y, out)


def fir3d(x, pad=(0, 0), gain=1.0, kernel=RESAMPLE_KERNEL):
    """Zero-pad every spatial axis by `pad`, then VALID-filter with the separable 3-D FIR kernel * gain.

    x: [B, X, Y, Z, C] -> [B, X', Y', Z', C] with X' = X + pad[0] + pad[1] - len(kernel) + 1.
    The filter is linear, so its gradient is its adjoint (the reversed kernel with complementary pads):
    nothing is kept for the backward pass, and higher-order gradients work the same way.
    """
    taps = fir_taps(kernel)
    num_taps = len(taps)

    @tf.custom_gradient
    def filtered(x):
        y = x
        for axis in SPATIAL_AXES:
            y = _fir_along_axis(y, taps * gain if axis == SPATIAL_AXES[0] else taps, axis, pad)

        def adjoint(dy):
            return fir3d(dy, pad=(num_taps - 1 - pad[0], num_taps - 1 - pad[1]), gain=gain, kernel=kernel[::-1])
        return y, adjoint

    return filtered(x)


def zero_insert(x):
    """Put the samples at even positions of a zero grid: [B, X, Y, Z, C] -> [B, 2X-1, 2Y-1, 2Z-1, C]."""
    for axis in SPATIAL_AXES:
        dims = tf.unstack(tf.shape(x))
        length = dims[axis]
        dims[axis] = 2 * length
        x = tf.reshape(tf.stack([x, tf.zeros_like(x)], axis=axis + 1), tf.stack(dims))
        x = _slice_axis(x, axis, 0, 2 * length - 1)
    return x


def _up_pads(kernel_size, num_taps):
    # Pads between the transposed convolution and the FIR so the output is exactly 2x.
    p = (num_taps - 2) - (kernel_size - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


def conv3d_same(x, w):
    """Stride-1 SAME cross-correlation. x: [B, X, Y, Z, I], w: [k, k, k, I, O] -> [B, X, Y, Z, O]."""
    return tf.nn.conv3d(x, w, strides=[1] * 5, padding="SAME")


def upsample_conv3d(x, w, kernel=RESAMPLE_KERNEL):
    """The original's up-sample + convolution (G `Conv0_up`, G resnet `Skip`).

    x: [B, X, Y, Z, I], w: [k, k, k, I, O] -> [B, 2X, 2Y, 2Z, O].
    Equals: zero-insert to 2X-1, pad k-1, cross-correlate with w[:, :, ::-1] (third kernel axis
    reversed: the original reverses two of three axes before its transposed convolution), then pad
    and filter with 4 * FIR.
    """
    k = int(w.shape[0])
    in_shape = tf.shape(x)
    out_channels = int(w.shape[-1])
    # The transposed convolution flips all three axes, so its filter is w reversed on axes 0 and 1.
    w_t = tf.transpose(w[::-1, ::-1], [0, 1, 2, 4, 3])  # [k, k, k, O, I]
    out_shape = tf.stack([in_shape[0], 2 * in_shape[1] + k - 2, 2 * in_shape[2] + k - 2,
                          2 * in_shape[3] + k - 2, out_channels])
    y = tf.nn.conv3d_transpose(x, w_t, out_shape, strides=[1, 2, 2, 2, 1], padding="VALID")
    return fir3d(y, pad=_up_pads(k, len(kernel)), gain=UP_GAIN, kernel=kernel)


def conv_downsample3d(x, w, kernel=RESAMPLE_KERNEL):
    """The original's FIR + strided convolution (D `Conv1_down`, D `Skip`).

    x: [B, X, Y, Z, I], w: [k, k, k, I, O] -> [B, floor((X-2)/2)+1, ..., O] (X/2 for even X).
    """
    k = int(w.shape[0])
    p = (len(kernel) - 2) + (k - 1)
    y = fir3d(x, pad=((p + 1) // 2, p // 2), kernel=kernel)
    return tf.nn.conv3d(y, w, strides=[1, 2, 2, 2, 1], padding="VALID")


def upsample3d(x, kernel=RESAMPLE_KERNEL):
    """The original's FIR up-sampling (G skip): nearest repeat, pad (3, 1), 4 * FIR.

    x: [B, X, Y, Z, C] -> [B, 2X, 2Y, 2Z, C]; a constant is multiplied by 4.
    """
    for axis in SPATIAL_AXES:
        x = tf.repeat(x, 2, axis=axis)
    return fir3d(x, pad=(3, 1), gain=UP_GAIN, kernel=kernel)


def downsample3d(x, kernel=RESAMPLE_KERNEL):
    """The original's FIR down-sampling (D skip): pad (3, 1), FIR, keep even samples.

    x: [B, X, Y, Z, C] -> [B, ceil(X/2), ceil(Y/2), ceil(Z/2), C].
    """
    y = fir3d(x, pad=(3, 1), kernel=kernel)
    return y[:, ::2, ::2, ::2, :]
