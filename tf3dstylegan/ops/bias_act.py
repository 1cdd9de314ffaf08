"""Bias + activation + gain, as the original's `fused_bias_act`, and the modulated layer's epilogue
(demodulation, noise, bias, lrelu). On TensorFlow the epilogue is one kernel that keeps only its output for the
backward pass (`tf3dstylegan.backend.tensorflow.ops.bias_lrelu`)."""
import math

import keras
import numpy as np
from keras import ops

from tf3dstylegan.backend import tensorflow_variant

SQRT2 = math.sqrt(2)
ACTIVATIONS = {"linear": 1.0, "lrelu": SQRT2}  # name -> default gain


def accumulator_dtype(dtype):
    """The dtype of sums and of style/demodulation arithmetic: float64 for float64, float32 otherwise."""
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


def bias_act(x, bias=None, act="linear", alpha=0.2, gain=None, lrmul=1.0):
    """x + bias * lrmul (bias on the last axis), then the activation, then its gain.

    x: [B, ..., C], bias: [C] -> [B, ..., C].
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    gain = ACTIVATIONS[act] if gain is None else gain
    if bias is not None and lrmul != 1:
        bias = bias * lrmul
    if act == "lrelu":
        return bias_lrelu(x, bias, alpha=alpha, gain=gain)
    if bias is not None:
        x = x + ops.cast(bias, x.dtype)
    return x * ops.cast(gain, x.dtype) if gain != 1 else x


@tensorflow_variant("bias_lrelu")
def bias_lrelu(x, bias=None, scale=None, noise=None, strength=None, alpha=0.2, gain=SQRT2):
    """lrelu(x * scale + noise * strength + bias) * gain.

    x: [B, ..., C]; bias: [C] or None; scale: [B, C] or None (per sample and channel: the demodulation
    coefficients); noise: [B or 1, ..., 1] or None, with strength: [] -> [B, ..., C].
    """
    dtype, rank = x.dtype, len(x.shape)
    if scale is not None:
        x = x * ops.reshape(ops.cast(scale, dtype), (-1,) + (1,) * (rank - 2) + (x.shape[-1],))
    if noise is not None:
        x = x + ops.cast(noise, dtype) * ops.cast(strength, dtype)
    if bias is not None:
        x = x + ops.cast(bias, dtype)
    alpha = float(np.float32(alpha))  # rounded as TensorFlow's leaky_relu attribute
    return ops.where(x > 0, x, x * ops.cast(alpha, dtype)) * ops.cast(gain, dtype)
