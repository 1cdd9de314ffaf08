"""Bias + activation + gain, as the original's `fused_bias_act`, and the fused
modulated-layer epilogue (demodulation, noise, bias, lrelu) that keeps only its output for backprop."""
import numpy as np
import tensorflow as tf

SQRT2 = float(np.sqrt(2))
# name -> (function, default gain)
ACTIVATIONS = {
    "linear": (lambda x, alpha: x, 1.0),
    "lrelu": (lambda x, alpha: tf.nn.leaky_relu(x, alpha=alpha), SQRT2),
    "relu": (lambda x, alpha: tf.nn.relu(x), SQRT2),
    "tanh": (lambda x, alpha: tf.nn.tanh(x), 1.0),
    "sigmoid": (lambda x, alpha: tf.nn.sigmoid(x), 1.0),
}


def bias_act(x, bias=None, act="linear", alpha=0.2, gain=None, lrmul=1.0):
    """x + bias * lrmul (bias on the last axis), then the activation, then its gain.

    x: [B, ..., C], bias: [C] -> [B, ..., C].
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    fn, default_gain = ACTIVATIONS[act]
    gain = default_gain if gain is None else gain
    if bias is not None and lrmul != 1:
        bias = bias * lrmul
    if act == "lrelu":
        return bias_lrelu(x, bias, alpha=alpha, gain=gain)
    if bias is not None:
        x = x + tf.cast(bias, x.dtype)
    x = fn(x, alpha)
    return x * tf.constant(gain, x.dtype) if gain != 1 else x


@tf.function(jit_compile=True, reduce_retracing=True)
def _lrelu_forward(x, scale, noise, strength, bias, alpha, gain):
    # One fused kernel: [B, ..., C] -> [B, ..., C].
    a = x * scale + noise * strength + bias
    return tf.where(a > 0, a, a * alpha) * gain


@tf.function(jit_compile=True, reduce_retracing=True)
def _lrelu_backward(dy, y, scale, alpha, gain):
    # d/dx of lrelu(x * scale + ...) * gain from the output's sign: [B, ..., C] -> [B, ..., C].
    return dy * tf.where(y > 0, tf.constant(gain, dy.dtype), tf.constant(gain * alpha, dy.dtype)) * scale


def accumulator_dtype(dtype):
    """The dtype of sums and of style/demodulation arithmetic: float64 for float64, float32 otherwise."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def _sum(x, axis=None, keepdims=False):
    return tf.reduce_sum(tf.cast(x, accumulator_dtype(x.dtype)), axis=axis, keepdims=keepdims)


def bias_lrelu(x, bias=None, scale=None, noise=None, strength=None, alpha=0.2, gain=SQRT2):
    """lrelu(x * scale + noise * strength + bias) * gain as one kernel that keeps only its output.

    x: [B, ..., C]; bias: [C] or None; scale: [B, C] or None (per sample and channel, non-zero: the
    demodulation coefficients); noise: [B or 1, ..., 1] or None, with strength: [] -> [B, ..., C].
    The backward pass reads the slope from the output's sign and gets every sum it needs from the
    output (sum(dy * y) = sum(d_pre * pre)), so no input is kept; it is exact to any order.
    """
    x = tf.convert_to_tensor(x)
    dtype, rank = x.dtype, x.shape.rank
    alpha, gain = float(np.float32(alpha)), float(gain)  # alpha rounded as tf.nn.leaky_relu's attribute
    spatial = list(range(1, rank - 1))
    inputs = {"x": x, "bias": tf.zeros([], dtype) if bias is None else tf.cast(bias, dtype)}
    if scale is not None:
        inputs["scale"] = tf.reshape(tf.cast(scale, dtype), [-1] + [1] * (rank - 2) + [x.shape[-1]])
    if noise is not None:
        inputs["noise"], inputs["strength"] = tf.cast(noise, dtype), tf.cast(strength, dtype)
    names = list(inputs)

    @tf.custom_gradient
    def fused(*args):
        t = dict(zip(names, args))
        one, zero = tf.ones([], dtype), tf.zeros([], dtype)
        scale_ = t.get("scale", one)
        if "scale" in t or "noise" in t:
            y = _lrelu_forward(t["x"], scale_, t.get("noise", zero), t.get("strength", zero), t["bias"], alpha, gain)
        else:  # plain TF ops, which TF fuses into a preceding convolution on the CPU
            y = tf.nn.leaky_relu(t["x"] + t["bias"], alpha=alpha) * tf.constant(gain, dtype)

        def grad(dy):
            dx = _lrelu_backward(dy, y, scale_, alpha, gain)                       # [B, ..., C]
            # Per-sample, per-channel sums of d(pre-activation): sum(da) and sum(da * noise).
            acc = accumulator_dtype(dtype)
            inv_scale = 1.0 / tf.cast(t["scale"], acc) if "scale" in t else 1.0
            da_sum = _sum(dx, spatial, keepdims=True) * inv_scale                  # [B, 1.., C]
            bias_grad = tf.reduce_sum(da_sum, axis=list(range(rank - 1)))           # [C]
            grads = {"x": dx, "bias": bias_grad if bias is not None else tf.reduce_sum(bias_grad)}
            correction = tf.cast(t["bias"], acc) * da_sum
            if "noise" in t:
                da_noise = _sum(dx * t["noise"], spatial, keepdims=True) * inv_scale
                grads["strength"] = tf.reduce_sum(da_noise)
                noise_sum = tf.reduce_sum(dx / scale_, axis=-1, keepdims=True) * t["strength"]
                grads["noise"] = tf.reduce_sum(noise_sum, axis=0, keepdims=True) \
                    if t["noise"].shape[0] == 1 else noise_sum
                correction += tf.cast(t["strength"], acc) * da_noise
            if "scale" in t:
                # sum(da * x) with x = (pre - noise * strength - bias) / scale and sum(da * pre) = sum(dy * y).
                grads["scale"] = (_sum(dy * y, spatial, keepdims=True) - correction) * inv_scale
            return [tf.cast(grads[n], args[i].dtype) for i, n in enumerate(names)]

        return y, grad

    return fused(*inputs.values())
