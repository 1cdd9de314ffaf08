"""Style modulation, demodulation and the modulated 3D convolution (spec §3.4)."""
import tensorflow as tf

from tf3dstylegan.ops.upfirdn3d import (RESAMPLE_KERNEL, UP_GAIN, _up_pads, conv3d_same, fir3d, upsample_conv3d,
                                        zero_insert)


def normalize_2nd_moment(x, axis=1, eps=1e-8):
    """x / sqrt(mean(x**2) + eps) along `axis` (the mapping network's z normalisation). [B, N] -> [B, N]."""
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axis, keepdims=True) + eps)


def style_scales(w, mod_weight, mod_bias):
    """Per-input-channel scales s = w @ (mod_weight / sqrt(w_dim)) + mod_bias + 1.

    w: [B, W], mod_weight: [W, I], mod_bias: [I] -> [B, I] (float32).
    """
    w, mod_weight, mod_bias = (tf.cast(t, tf.float32) for t in (w, mod_weight, mod_bias))
    scale = tf.math.rsqrt(tf.cast(tf.shape(mod_weight)[0], tf.float32))
    return tf.matmul(w, mod_weight * scale) + mod_bias + 1.0


def demodulation_coefficients(weight, styles, eps=1e-8):
    """d[b, o] = 1 / sqrt(sum_{k,k,k,i} (weight[..., i, o] * s[b, i])**2 + eps).

    weight: [k, k, k, I, O] (already scaled), styles: [B, I] -> [B, O] (float32).
    """
    weight_sq = tf.reduce_sum(tf.square(tf.cast(weight, tf.float32)), axis=[0, 1, 2])  # [I, O]
    return tf.math.rsqrt(tf.matmul(tf.square(tf.cast(styles, tf.float32)), weight_sq) + eps)


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
    styles = tf.cast(styles, tf.float32)
    demod = demodulation_coefficients(weight, styles) if demodulate else None
    if fused:
        return _fused_modulated_conv3d(x, tf.cast(weight, tf.float32), styles, demod, up, kernel)
    x = x * tf.cast(styles[:, tf.newaxis, tf.newaxis, tf.newaxis, :], x.dtype)
    w = tf.cast(weight, x.dtype)
    x = upsample_conv3d(x, w, kernel) if up else conv3d_same(x, w)
    if demod is not None:
        x = x * tf.cast(demod[:, tf.newaxis, tf.newaxis, tf.newaxis, :], x.dtype)
    return x
