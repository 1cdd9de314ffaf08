"""Style modulation, demodulation and the modulated 3D convolution."""
import math

from keras import ops

from tf3dstylegan.backend import tensorflow_variant
from tf3dstylegan.ops.bias_act import accumulator_dtype
from tf3dstylegan.ops.upfirdn3d import (RESAMPLE_KERNEL, UP_GAIN, _up_pads, conv3d_same, fir3d, upsample_conv3d,
                                        zero_insert)


def normalize_2nd_moment(x, axis=1, eps=1e-8):
    """x / sqrt(mean(x**2) + eps) along `axis` (the mapping network's z normalisation). [B, N] -> [B, N]."""
    return x * ops.rsqrt(ops.mean(ops.square(x), axis=axis, keepdims=True) + eps)


def style_scales(w, mod_weight, mod_bias):
    """Per-input-channel scales s = w @ (mod_weight / sqrt(dlatent_size)) + mod_bias + 1.

    w: [B, W], mod_weight: [W, I], mod_bias: [I] -> [B, I] (float32).
    """
    w, mod_weight, mod_bias = (ops.cast(t, "float32") for t in (w, mod_weight, mod_bias))
    return ops.matmul(w, mod_weight * (1.0 / math.sqrt(mod_weight.shape[0]))) + mod_bias + 1.0


def demodulation_coefficients(weight, styles, eps=1e-8):
    """d[b, o] = 1 / sqrt(sum_{k,k,k,i} (weight[..., i, o] * s[b, i])**2 + eps).

    weight: [k, k, k, I, O] (already scaled), styles: [B, I] -> [B, O] (float32, float64 for float64).
    """
    dtype = accumulator_dtype(weight.dtype)
    weight_sq = ops.sum(ops.square(ops.cast(weight, dtype)), axis=(0, 1, 2))  # [I, O]
    return ops.rsqrt(ops.matmul(ops.square(ops.cast(styles, dtype)), weight_sq) + eps)


@tensorflow_variant("grouped_conv3d")
def grouped_conv3d(x, w):
    """VALID grouped 3D convolution: x [1, X, Y, Z, G*I], w [k, k, k, I, G*O] -> [1, X', Y', Z', G*O]."""
    return ops.conv(x, w, strides=1, padding="valid")


def _fused_modulated_conv3d(x, weight, styles, demod, up, kernel):
    """One grouped convolution with per-sample weights weight * s * d (the original's fused path)."""
    k, _, _, in_ch, out_ch = weight.shape
    w = weight[None] * styles[:, None, None, None, :, None]                         # [B, k, k, k, I, O]
    if demod is not None:
        w = w * demod[:, None, None, None, None, :]
    w = ops.cast(ops.reshape(ops.transpose(w, (1, 2, 3, 4, 0, 5)), (k, k, k, in_ch, -1)), x.dtype)  # [.., I, B*O]
    if up:
        x = zero_insert(x)
        w = ops.flip(w, axis=2)  # the original's two-of-three axis reversal, seen from the correlation side
        pad = k - 1
    else:
        pad = k // 2
    x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [pad, pad], [0, 0]])
    _, px, py, pz, _ = ops.shape(x)
    x = ops.reshape(ops.transpose(x, (1, 2, 3, 0, 4)), (1, px, py, pz, -1))         # [1, X, Y, Z, B*I]
    y = grouped_conv3d(x, w)
    _, qx, qy, qz, _ = ops.shape(y)
    y = ops.transpose(ops.reshape(y, (qx, qy, qz, -1, out_ch)), (3, 0, 1, 2, 4))    # [B, X', Y', Z', O]
    if up:
        y = fir3d(y, pad=_up_pads(k, len(kernel)), gain=UP_GAIN, kernel=kernel)
    return y


@tensorflow_variant("modulated_conv3d_same")
def modulated_conv3d_same(x, weight, styles):
    """conv3d_same(x * styles, weight). x: [B, X, Y, Z, I], weight: [k, k, k, I, O], styles: [B, I] -> [B, X, Y, Z, O].
    (On TensorFlow the backward pass keeps x alone, not x * styles.)"""
    return conv3d_same(x * styles[:, None, None, None, :], weight)


def modulated_conv3d(x, weight, styles, demodulate=True, up=False, fused=False, kernel=RESAMPLE_KERNEL):
    """Modulated, optionally up-sampling 3D convolution, its demodulation left to the caller (to fold it into the
    following bias + activation): (y, d).

    x: [B, X, Y, Z, I], weight: [k, k, k, I, O] (runtime-scaled), styles: [B, I] -> y [B, X, Y, Z, O] (or
    [B, 2X, 2Y, 2Z, O] with up=True) and d [B, O] float32 (float64 for float64), or None when demodulate=False or
    already applied (the fused path). Non-fused (the original's default): scale x by s, convolve with the shared
    weight. Fused: one grouped convolution with per-sample weights; the same result.
    """
    styles = ops.cast(styles, accumulator_dtype(x.dtype))
    demod = demodulation_coefficients(weight, styles) if demodulate else None
    if fused:
        return _fused_modulated_conv3d(x, ops.cast(weight, styles.dtype), styles, demod, up, kernel), None
    w = ops.cast(weight, x.dtype)
    if up:  # the modulated input is kept at the lower resolution, where it is 8x smaller
        return upsample_conv3d(x * ops.cast(styles[:, None, None, None, :], x.dtype), w, kernel), demod
    return modulated_conv3d_same(x, w, ops.cast(styles, x.dtype)), demod


def apply_demodulation(y, demod):
    """y * d per sample and output channel; y unchanged for d None. y: [B, X, Y, Z, O], d: [B, O]."""
    return y if demod is None else y * ops.cast(demod[:, None, None, None, :], y.dtype)
