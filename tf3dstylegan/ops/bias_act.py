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
    if bias is not None:
        x = x + tf.cast(bias * lrmul if lrmul != 1 else bias, x.dtype)
    x = fn(x, alpha)
    gain = default_gain if gain is None else gain
    return x * tf.cast(gain, x.dtype) if gain != 1 else x
