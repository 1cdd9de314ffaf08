"""Keras layers: thin wrappers that own the variables and call the pure ops.

Storage follows the original: weights are stored raw (N(0, 1/lrmul**2) at init) and
scaled at run time by lrmul / sqrt(fan_in); biases are scaled by lrmul. Every layer is serializable.
"""
import math

import keras
from keras import ops as K

from tf3dstylegan import ops

PACKAGE = "tf3dstylegan"
serializable = keras.saving.register_keras_serializable(package=PACKAGE)
NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode):
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


def _normal(stddev):
    return keras.initializers.RandomNormal(stddev=stddev)


@serializable
class EqualizedDense(keras.layers.Layer):
    """Dense layer with equalized learning rate; rank > 2 inputs are flattened (channels-last order)."""

    def __init__(self, units, lrmul=1.0, use_bias=True, activation="linear", **kwargs):
        super().__init__(**kwargs)
        self.units, self.lrmul, self.use_bias, self.activation = int(units), float(lrmul), use_bias, activation

    def build(self, input_shape):
        fan_in = math.prod(input_shape[1:])
        self.weight_gain = self.lrmul / math.sqrt(fan_in)
        self.weight = self.add_weight(name="weight", shape=(fan_in, self.units), initializer=_normal(1.0 / self.lrmul))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def call(self, x):
        x = K.reshape(x, (-1, self.weight.shape[0]))                     # [B, fan_in]
        y = K.matmul(x, K.cast(self.weight * self.weight_gain, x.dtype))  # [B, units]
        return ops.bias_act(y, self.bias, self.activation, lrmul=self.lrmul)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "lrmul": self.lrmul, "use_bias": self.use_bias,
                "activation": self.activation}


@serializable
class EqualizedConv3D(keras.layers.Layer):
    """3D convolution with equalized learning rate, optional FIR up- or down-sampling, bias and activation."""

    def __init__(self, filters, kernel_size, up=False, down=False, use_bias=True, activation="linear", **kwargs):
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("EqualizedConv3D: up and down are exclusive")
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.up, self.down, self.use_bias, self.activation = up, down, use_bias, activation

    def build(self, input_shape):
        in_ch = int(input_shape[-1])
        self.weight_gain = 1.0 / math.sqrt(self.kernel_size ** 3 * in_ch)
        self.weight = self.add_weight(name="weight", shape=(self.kernel_size,) * 3 + (in_ch, self.filters),
                                      initializer=_normal(1.0))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def call(self, x):
        w = K.cast(self.weight * self.weight_gain, x.dtype)
        if self.up:
            x = ops.upsample_conv3d(x, w)
        elif self.down:
            x = ops.conv_downsample3d(x, w)
        else:
            x = ops.conv3d_same(x, w)
        return ops.bias_act(x, self.bias, self.activation)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "up": self.up,
                "down": self.down, "use_bias": self.use_bias, "activation": self.activation}


@serializable
class ModConv3D(keras.layers.Layer):
    """Modulated 3D convolution: call(x [B,X,Y,Z,I], w [B,W]) -> [B,X',Y',Z',O]; owns weight and the style affine."""

    def __init__(self, filters, kernel_size, demodulate=True, up=False, fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.demodulate, self.up, self.fused = demodulate, up, fused

    def build(self, x_shape, w_shape):
        in_ch, dlatent_size = int(x_shape[-1]), int(w_shape[-1])
        self.weight_gain = 1.0 / math.sqrt(self.kernel_size ** 3 * in_ch)
        self.weight = self.add_weight(name="weight", shape=(self.kernel_size,) * 3 + (in_ch, self.filters),
                                      initializer=_normal(1.0))
        self.mod_weight = self.add_weight(name="mod_weight", shape=(dlatent_size, in_ch), initializer=_normal(1.0))
        self.mod_bias = self.add_weight(name="mod_bias", shape=(in_ch,), initializer="zeros")

    def call(self, x, w):
        return ops.apply_demodulation(*self.deferred(x, w))

    def deferred(self, x, w):
        """(convolution before demodulation, demodulation coefficients [B, O] or None): see
        ops.modulated_conv3d."""
        styles = ops.style_scales(w, self.mod_weight, self.mod_bias)  # [B, I]
        return ops.modulated_conv3d(x, K.cast(self.weight, "float32") * self.weight_gain, styles,
                                    demodulate=self.demodulate, up=self.up, fused=self.fused)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "demodulate": self.demodulate, "up": self.up, "fused": self.fused}


@serializable
class NoiseInjection(keras.layers.Layer):
    """Adds noise * strength; keeps a stored noise buffer `[1, X, Y, Z, 1]` for noise_mode="const".

    With use_noise=False (the config's no_noise) the buffer exists (zeros) but nothing is added. (Files written
    before this name was unified stored it as `enabled`; from_config still reads that.)
    """

    def __init__(self, use_noise=True, **kwargs):
        super().__init__(**kwargs)
        self.use_noise = use_noise

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "enabled" in config:
            config["use_noise"] = config.pop("enabled")
        return cls(**config)

    def build(self, x_shape):
        self.noise_buffer = self.add_weight(name="noise_buffer", shape=(1,) + tuple(x_shape[1:4]) + (1,),
                                            initializer=_normal(1.0) if self.use_noise else "zeros",
                                            trainable=False)
        self.strength = self.add_weight(name="strength", shape=(), initializer="zeros") if self.use_noise else None

    def call(self, x, noise_mode="const", noise=None):
        noise = self.noise_map(K.shape(x)[0], noise_mode, noise)
        return x if noise is None else x + K.cast(noise, x.dtype) * K.cast(self.strength, x.dtype)

    def noise_map(self, batch_size, noise_mode="const", noise=None):
        """The noise to add ([B or 1, X, Y, Z, 1], to be scaled by `strength`), or None for none."""
        check_noise_mode(noise_mode)
        if not self.use_noise or (noise_mode == "none" and noise is None):
            return None
        if noise is None:
            return self.random_noise(batch_size) if noise_mode == "random" else self.noise_buffer
        return noise

    def random_noise(self, batch_size):
        """Fresh N(0, 1) float32 noise of this layer's shape: [batch_size, X, Y, Z, 1], from Keras' global seed
        generator (compiled JAX functions cannot draw from it: pass the noise maps to them instead)."""
        return keras.random.normal((batch_size,) + tuple(self.noise_buffer.shape[1:]))

    def get_config(self):
        return {**super().get_config(), "use_noise": self.use_noise}


@serializable
class SynthesisLayer(keras.layers.Layer):
    """Modulated conv -> noise -> bias + lrelu: one style layer of the synthesis network."""

    def __init__(self, filters, kernel_size=3, up=False, use_noise=True, fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.up, self.use_noise, self.fused = filters, kernel_size, up, use_noise, fused
        self.conv = ModConv3D(filters, kernel_size, demodulate=True, up=up, fused=fused, name="conv")
        self.noise = NoiseInjection(use_noise=use_noise, name="noise")

    def build(self, x_shape, w_shape):
        self.conv.build(x_shape, w_shape)
        scale = 2 if self.up else 1
        self.noise.build((x_shape[0],) + tuple(s * scale for s in x_shape[1:4]) + (self.filters,))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x, w, noise_mode="const", noise=None):
        y, demod = self.conv.deferred(x, w)
        noise = self.noise.noise_map(K.shape(x)[0], noise_mode, noise)
        # Demodulation, noise, bias and lrelu in one kernel that keeps only its output.
        return ops.bias_lrelu(y, self.bias, scale=demod, noise=noise,
                              strength=None if noise is None else self.noise.strength)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "up": self.up,
                "use_noise": self.use_noise, "fused": self.fused}


@serializable
class ToImage(keras.layers.Layer):
    """Modulated 1x1x1 conv without demodulation + bias, linear (the original's ToRGB)."""

    def __init__(self, channels, fused=False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.fused = channels, fused
        self.conv = ModConv3D(channels, 1, demodulate=False, fused=fused, name="conv")

    def build(self, x_shape, w_shape):
        self.conv.build(x_shape, w_shape)
        self.bias = self.add_weight(name="bias", shape=(self.channels,), initializer="zeros")

    def call(self, x, w):
        return ops.bias_act(self.conv(x, w), self.bias, "linear")

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "fused": self.fused}


@serializable
class ConstantInput(keras.layers.Layer):
    """The learned constant block `[1, b0, b1, b2, C]`, tiled over the batch: call(ws) -> [B, b0, b1, b2, C]."""

    def __init__(self, channels, base_size, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.base_size = int(channels), tuple(int(b) for b in base_size)

    def build(self, input_shape=None):
        self.const = self.add_weight(name="const", shape=(1,) + self.base_size + (self.channels,),
                                     initializer=_normal(1.0))

    def call(self, ws):
        const = K.cast(self.const, self.compute_dtype)
        return K.tile(const, (K.shape(ws)[0], 1, 1, 1, 1))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "base_size": list(self.base_size)}


@serializable
class Upsample3D(keras.layers.Layer):
    """The original's FIR up-sampling (nearest repeat, 4 * FIR): [B, X, Y, Z, C] -> [B, 2X, 2Y, 2Z, C]."""

    def call(self, x):
        return ops.upsample3d(x)


@serializable
class Downsample3D(keras.layers.Layer):
    """The original's FIR down-sampling: [B, X, Y, Z, C] -> [B, ceil(X/2), ceil(Y/2), ceil(Z/2), C]."""

    def call(self, x):
        return ops.downsample3d(x)


@serializable
class MinibatchStddev3D(keras.layers.Layer):
    """Appends the group standard deviation channel(s): [N, X, Y, Z, C] -> [N, X, Y, Z, C + F]."""

    def __init__(self, group_size=4, num_features=1, **kwargs):
        super().__init__(**kwargs)
        self.group_size, self.num_features = int(group_size), int(num_features)

    def call(self, x):
        return ops.minibatch_stddev(x, self.group_size, self.num_features)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "num_features": self.num_features}
