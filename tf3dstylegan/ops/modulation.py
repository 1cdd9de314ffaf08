"""Style modulation, demodulation and the modulated 3D convolution."""
import tensorflow as tf

from tf3dstylegan.ops.bias_act import accumulator_dtype
from tf3dstylegan.ops.upfirdn3d import (RESAMPLE_KERNEL, UP_GAIN, _up_pads, conv3d_same, fir3d, upsample_conv3d,
                                        zero_insert)


def normalize_2nd_moment(x, axis=1, eps=1e-8):
    """x / sqrt(mean(x**2) + eps) along `axis` (the mapping network's z normalisation). [B, N] -> [B, N]."""
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axis, keepdims=True) + eps)


def style_scales(w, mod_weight, mod_bias):
    """Per-input-channel scales s = w @ (mod_weight / sqrt(dlatent_size)) + mod_bias + 1.

    w: [B, W], mod_weight: [W, I], mod_bias: [I] -> [B, I] (float32).
    """
    w, mod_weight, mod_bias = (tf.cast(t, tf.float32) for t in (w, mod_weight, mod_bias))
    scale = tf.math.rsqrt(tf.cast(tf.shape(mod_weight)[0], tf.float32))
    return tf.matmul(w, mod_weight * scale) + mod_bias + 1.0


def demodulation_coefficients(weight, styles, eps=1e-8):
    """d[b, o] = 1 / sqrt(sum_{k,k,k,i} (weight[..., i, o] * s[b, i])**2 + eps).

    weight: [k, k, k, I, O] (already scaled), styles: [B, I] -> [B, O] (float32, float64 for float64).
    """
    dtype = accumulator_dtype(weight.dtype)
    weight_sq = tf.reduce_sum(tf.square(tf.cast(weight, dtype)), axis=[0, 1, 2])  # [I, O]
    return tf.math.rsqrt(tf.matmul(tf.square(tf.cast(styles, dtype)), weight_sq) + eps)


@tf.function(jit_compile=True, reduce_retracing=True)
def _grouped_conv3d(x, w):
    # x: [1, X, Y, Z, B*I], w: [k, k, k, I, B*O] -> VALID grouped conv; XLA-only on the CPU.
    return tf.nn.conv3d(x, w, strides=[1] * 5, padding="VALID")


def _fused_modulated_conv3d(x, weight, styles, demod, up, kernel):
    """One grouped convolution with per-sample weights weight * s * d (the original's fused path)."""
    k, _, _, in_ch, out_ch = weight.shape
    w = weight[tf.newaxis] * styles[:, tf.newaxis, tf.newaxis, tf.newaxis, :, tf.newaxis]  # [B, k, k, k, I, O]
    if demod is not None:
        w = w * demod[:, tf.newaxis, tf.newaxis, tf.newaxis, tf.newaxis, :]
    batch = tf.shape(x)[0]
    w = tf.reshape(tf.transpose(w, [1, 2, 3, 4, 0, 5]), [k, k, k, in_ch, -1])     # [k, k, k, I, B*O]
    w = tf.cast(w, x.dtype)
    if up:
        x = zero_insert(x)
        w = w[:, :, ::-1]  # the original's two-of-three axis reversal, seen from the correlation side
        pad = k - 1
    else:
        pad = k // 2
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [pad, pad], [0, 0]])
    dims = tf.shape(x)
    x = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), [1, dims[1], dims[2], dims[3], -1])  # [1, X, Y, Z, B*I]
    y = _grouped_conv3d(x, w)
    dims = tf.shape(y)
    y = tf.reshape(y, [dims[1], dims[2], dims[3], batch, out_ch])
    y = tf.transpose(y, [3, 0, 1, 2, 4])                                           # [B, X', Y', Z', O]
    if up:
        y = fir3d(y, pad=_up_pads(k, len(kernel)), gain=UP_GAIN, kernel=kernel)
    return y


def modulated_conv3d(x, weight, styles, demodulate=True, up=False, fused=False, kernel=RESAMPLE_KERNEL):
    """Modulated (and optionally demodulated, up-sampling) 3D convolution.

    x: [B, X, Y, Z, I], weight: [k, k, k, I, O] (runtime-scaled), styles: [B, I]
    -> [B, X, Y, Z, O], or [B, 2X, 2Y, 2Z, O] with up=True.
    Non-fused (the original's default): scale x by s, convolve with the shared weight, scale by d.
    Fused: one grouped convolution with per-sample weights (needs XLA on the CPU); same result.
    """
    return apply_demodulation(*modulated_conv3d_deferred(x, weight, styles, demodulate, up, fused, kernel))


def apply_demodulation(y, demod):
    """y * d per sample and output channel; y unchanged for d None. y: [B, X, Y, Z, O], d: [B, O]."""
    return y if demod is None else y * tf.cast(demod[:, tf.newaxis, tf.newaxis, tf.newaxis, :], y.dtype)


def modulated_conv3d_deferred(x, weight, styles, demodulate=True, up=False, fused=False, kernel=RESAMPLE_KERNEL):
    """modulated_conv3d with the demodulation left to the caller: (y, d) with d [B, O] float32 or float64 (None when
    already applied, as in the fused path, or demodulate=False), so that it can be folded into the
    following bias + activation kernel."""
    styles = tf.cast(styles, accumulator_dtype(x.dtype))
    demod = demodulation_coefficients(weight, styles) if demodulate else None
    if fused:
        return _fused_modulated_conv3d(x, tf.cast(weight, styles.dtype), styles, demod, up, kernel), None
    w = tf.cast(weight, x.dtype)
    if up:  # the modulated input is kept at the lower resolution, where it is 8x smaller
        y = upsample_conv3d(x * tf.cast(styles[:, tf.newaxis, tf.newaxis, tf.newaxis, :], x.dtype), w, kernel)
    else:
        y = _modulated_conv3d_same(x, w, tf.cast(styles, x.dtype))
    return y, demod


def _modulated_conv3d_same(x, weight, styles):
    """conv3d_same(x * styles, weight) keeping only x for the backward pass (x * styles is recomputed).

    x: [B, X, Y, Z, I], weight: [k, k, k, I, O], styles: [B, I] -> [B, X, Y, Z, O].
    """
    strides = [1] * 5

    @tf.custom_gradient
    def conv(x, weight, styles):
        s = styles[:, tf.newaxis, tf.newaxis, tf.newaxis, :]
        y = conv3d_same(x * s, weight)

        def grad(dy):
            d_modulated = tf.raw_ops.Conv3DBackpropInputV2(input_sizes=tf.shape(x), filter=weight,
                                                           out_backprop=dy, strides=strides, padding="SAME")
            d_weight = tf.raw_ops.Conv3DBackpropFilterV2(input=x * s, filter_sizes=tf.shape(weight),
                                                         out_backprop=dy, strides=strides, padding="SAME")
            d_styles = tf.reduce_sum(d_modulated * x, axis=[1, 2, 3])
            return d_modulated * s, d_weight, d_styles
        return y, grad

    return conv(x, weight, styles)
