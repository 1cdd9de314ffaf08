"""TensorFlow variants of `tf3dstylegan.ops` functions, swapped in on the TensorFlow backend (same signatures and
results): custom gradients that keep less for the backward pass and XLA islands for kernels TensorFlow's CPU build
lacks. Measured against the portable `keras.ops` versions with `bench/bench_networks.py --portable`.

Pure functions of tensors and plain numbers: nothing here imports the rest of the package.
"""
import numpy as np
import tensorflow as tf


def accumulator_dtype(dtype):
    """float64 for float64, float32 otherwise."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def _sum(x, axis=None, keepdims=False):
    return tf.reduce_sum(tf.cast(x, accumulator_dtype(x.dtype)), axis=axis, keepdims=keepdims)


@tf.function(jit_compile=True, reduce_retracing=True)
def _lrelu_forward(x, scale, noise, strength, bias, alpha, gain):
    # One fused kernel: [B, ..., C] -> [B, ..., C].
    a = x * scale + noise * strength + bias
    return tf.where(a > 0, a, a * alpha) * gain


@tf.function(jit_compile=True, reduce_retracing=True)
def _lrelu_backward(dy, y, scale, alpha, gain):
    # d/dx of lrelu(x * scale + ...) * gain from the output's sign: [B, ..., C] -> [B, ..., C].
    return dy * tf.where(y > 0, tf.constant(gain, dy.dtype), tf.constant(gain * alpha, dy.dtype)) * scale


def bias_lrelu(x, bias=None, scale=None, noise=None, strength=None, alpha=0.2, gain=float(np.sqrt(2))):
    """tf3dstylegan.ops.bias_lrelu as one kernel that keeps only its output for the backward pass.

    The backward pass reads the slope from the output's sign and gets every sum it needs from the output
    (sum(dy * y) = sum(d_pre * pre)), so no input is kept; it is exact to any order.
    """
    x = tf.convert_to_tensor(x)
    dtype, rank = x.dtype, x.shape.rank
    alpha, gain = float(np.float32(alpha)), float(gain)
    spatial = list(range(1, rank - 1))
    inputs = {"x": x, "bias": tf.zeros([], dtype) if bias is None else tf.cast(bias, dtype)}
    if scale is not None:
        inputs["scale"] = tf.reshape(tf.cast(scale, dtype), [-1] + [1] * (rank - 2) + [x.shape[-1]])
    if noise is not None:
        inputs["noise"], inputs["strength"] = tf.cast(noise, dtype), tf.cast(strength, dtype)
    names = list(inputs)

    @tf.custom_gradient
    def fused(*args):
        t = dict(zip(names, args, strict=True))
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


def modulated_conv3d_same(x, weight, styles):
    """conv3d_same(x * styles, weight) keeping only x for the backward pass (x * styles is recomputed).

    x: [B, X, Y, Z, I], weight: [k, k, k, I, O], styles: [B, I] -> [B, X, Y, Z, O].
    """
    strides = [1] * 5

    @tf.custom_gradient
    def conv(x, weight, styles):
        s = styles[:, tf.newaxis, tf.newaxis, tf.newaxis, :]
        y = tf.nn.conv3d(x * s, weight, strides=strides, padding="SAME")

        def grad(dy):
            d_modulated = tf.raw_ops.Conv3DBackpropInputV2(input_sizes=tf.shape(x), filter=weight,
                                                           out_backprop=dy, strides=strides, padding="SAME")
            d_weight = tf.raw_ops.Conv3DBackpropFilterV2(input=x * s, filter_sizes=tf.shape(weight),
                                                         out_backprop=dy, strides=strides, padding="SAME")
            d_styles = tf.reduce_sum(d_modulated * x, axis=[1, 2, 3])
            return d_modulated * s, d_weight, d_styles
        return y, grad

    return conv(x, weight, styles)


@tf.function(jit_compile=True, reduce_retracing=True)
def grouped_conv3d(x, w):
    """VALID grouped 3D convolution, x: [1, X, Y, Z, G*I], w: [k, k, k, I, G*O] (an XLA kernel: TensorFlow's CPU
    build has no grouped 3D convolution)."""
    return tf.nn.conv3d(x, w, strides=[1] * 5, padding="VALID")


def padded_depthwise_conv2d(x, kernel, pads):
    """tf3dstylegan.ops.upfirdn3d.padded_depthwise_conv2d with the zero padding inside the convolution, without a
    padded copy (bench_networks, 2mm-fd16 batch 2 on 2 cores: the G+D step 3.20-3.24 s against 3.59-3.76 s)."""
    return tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding=[list(p) for p in pads])


def linear_with_adjoint(forward, adjoint, jit=False):
    """A linear map `forward(x, *constants)` whose gradient is `adjoint(dy, *constants)` and the adjoint's the map:
    exact to any order, and nothing but the constants is kept for the backward pass (plain autodiff of a
    convolution or a gather keeps its input). jit: run both as XLA functions."""
    if jit:
        forward, adjoint = (tf.function(f, jit_compile=True, autograph=False) for f in (forward, adjoint))

    @tf.custom_gradient
    def apply(x, *constants):
        y = forward(x, *constants)
        # An upstream gradient can arrive without a static shape (e.g. from a function of unknown rank): it has y's.
        return y, lambda dy: (apply_adjoint(tf.ensure_shape(dy, y.shape), *constants),) + (None,) * len(constants)

    @tf.custom_gradient
    def apply_adjoint(dy, *constants):
        dx = adjoint(dy, *constants)
        return dx, lambda ddx: (apply(tf.ensure_shape(ddx, dx.shape), *constants),) + (None,) * len(constants)
    return apply


def run_after(previous, x):
    """x, computed only after the tensors `previous` (a list): slabs of a level one after the other, so that only
    one slab's feature maps exist at a time."""
    with tf.control_dependencies(previous):
        return tf.identity(x)
