"""Bias + activation + gain, as the original's `fused_bias_act` (spec §3.1)."""
import numpy as np
import tensorflow as tf

# name -> (function, default gain)
ACTIVATIONS = {
    "linear": (lambda x, alpha: x, 1.0),
    "lrelu": (lambda x, alpha: tf.nn.leaky_relu(x, alpha=alpha), float(np.sqrt(2))),
    "relu": (lambda x, alpha: tf.nn.relu(x), float(np.sqrt(2))),
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
    if bias is not None:
        bias = tf.cast(bias * lrmul if lrmul != 1 else bias, x.dtype)
    if act == "lrelu":
        return _bias_lrelu(x, tf.zeros([], x.dtype) if bias is None else bias, alpha, gain)
    if bias is not None:
        x = x + bias
    x = fn(x, alpha)
    return x * tf.constant(gain, x.dtype) if gain != 1 else x


def _bias_lrelu(x, bias, alpha, gain):
    """lrelu(x + bias) * gain that keeps only its output for the backward pass (the sign of the output
    gives the slope; the second derivative is zero, so the gradient is exact to any order).

    x: [B, ..., C], bias: [C] or [] -> [B, ..., C].
    """
    @tf.custom_gradient
    def fused(x, bias):
        y = tf.nn.leaky_relu(x + bias, alpha=alpha) * tf.constant(gain, x.dtype)

        def grad(dy):
            dx = dy * tf.where(y > 0, tf.constant(gain, dy.dtype), tf.constant(gain * alpha, dy.dtype))
            dbias = tf.reshape(tf.reduce_sum(dx, axis=tf.range(tf.rank(dx) - bias.shape.rank)), tf.shape(bias))
            return dx, dbias
        return y, grad

    return fused(x, bias)
