"""deepbet's 3D brain-extraction network (LinkNet3d, `deepbet==1.0.2`, MIT) as Keras models.

The network (`data/models/model.pt` and `bbox_model.pt` in the wheel, traced TorchScript modules with the same
layout; weights read without torch by `tf3dstylegan.metrics.weights`) maps a normalised T1 volume to
per-voxel softmax probabilities (background, brain). Torch layout, all convolutions 3D:

- `init`: conv 7^3 stride 2 pad 3 (no bias) -> InstanceNorm -> ReLU -> max-pool 3^3 stride 2 pad 1 (size / 4);
- `down0..down3`: two basic blocks each (conv 3^3 - IN - ReLU - conv 3^3 - IN, plus the input, ReLU); the first
  block of `down1..3` halves the size (shortcut: conv 1^3 stride 2 -> IN). Channels 16-32-64-128;
- `up0..up3`: conv 1^3 (C -> C/4) - IN - ReLU, transposed conv 3^3 stride 2 pad 1 output-pad 1 (stride 1
  pad 1 for `up3`) - IN - ReLU, conv 1^3 - IN - ReLU; channels 128 -> 64 -> 32 -> 16 -> 16, each output plus
  the encoder's map of the same size (`down2`, `down1`, `down0`, `init`);
- `tp_conv1` (transposed 3^3 stride 2, 16 -> 8, bias) - IN - ReLU, `conv` (3^3, 8 -> 8, bias) - IN - ReLU,
  `tp_conv2` (transposed 2^3 stride 2, 8 -> 2, bias), softmax over the two channels.

InstanceNorm: per sample and channel over X, Y, Z, biased variance, eps 1e-5, no affine. Torch's [B, C, D, H, W]
with D, H, W = the volume's voxel axes maps to channels-last [B, X, Y, Z, C] without moving the spatial axes.
Tensor code is Keras layers and `keras.ops` only, so the models run on every Keras backend.
"""
import numpy as np
import keras
from keras import ops

IN_EPSILON = 1e-5
SIZE_MULTIPLE = 32  # the full network halves every axis five times, then doubles it back five times
ENCODER_MAPS = ("init_map", "down0_map", "down1_map", "down2_map", "down3_map")


@keras.saving.register_keras_serializable(package="tf3dstylegan")
class InstanceNorm3D(keras.layers.Layer):
    """Per-sample, per-channel normalisation over X, Y, Z (biased variance), no affine."""

    def __init__(self, epsilon=IN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):  # [B, X, Y, Z, C]
        # Statistics in float64, as torch accumulates them on the CPU: over millions of voxels float32 sums
        # drift by ~1e-4 relative, which the following layers amplify.
        wide = ops.cast(x, "float64")
        mean = ops.mean(wide, axis=(1, 2, 3), keepdims=True)
        var = ops.mean(ops.square(wide - mean), axis=(1, 2, 3), keepdims=True)
        return (x - ops.cast(mean, x.dtype)) * ops.cast(ops.rsqrt(var + self.epsilon), x.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def conv_kernel(weight):
    """Torch Conv3d weight [out, in, kx, ky, kz] -> Keras Conv3D kernel [kx, ky, kz, in, out]."""
    return np.asarray(weight, np.float32).transpose(2, 3, 4, 1, 0)


def transposed_kernel(weight):
    """Torch ConvTranspose3d weight [in, out, kx, ky, kz] -> Keras Conv3DTranspose kernel [kx, ky, kz, out, in]."""
    return np.asarray(weight, np.float32).transpose(2, 3, 4, 1, 0)


def _layer_name(name):
    return name.replace(".", "_")


def _with_weights(layer, x, values):
    """Call `layer` on x (building it), then load `values` into it."""
    y = layer(x)
    layer.set_weights(values)
    return y


def conv(x, weights, name, stride=1, pad=0):
    """Torch Conv3d `name` (bias if the weights have one), symmetric zero padding `pad`."""
    weight = weights[f"{name}.weight"]
    bias = weights.get(f"{name}.bias")
    if pad:
        x = keras.layers.ZeroPadding3D(pad, name=_layer_name(name) + "_pad")(x)
    layer = keras.layers.Conv3D(weight.shape[0], weight.shape[2:], strides=stride, padding="valid",
                                use_bias=bias is not None, name=_layer_name(name))
    return _with_weights(layer, x, [conv_kernel(weight)] + ([] if bias is None else [np.asarray(bias, np.float32)]))


def transposed_conv(x, weights, name, stride, pad, output_pad):
    """Torch ConvTranspose3d `name`: the 'valid' transposed convolution, then `pad` voxels cropped at the start
    of each axis and `pad - output_pad` at its end (torch's output is (n - 1) * stride - 2 pad + k + output_pad)."""
    weight = weights[f"{name}.weight"]
    bias = weights.get(f"{name}.bias")
    layer = keras.layers.Conv3DTranspose(weight.shape[1], weight.shape[2:], strides=stride, padding="valid",
                                         use_bias=bias is not None, name=_layer_name(name))
    x = _with_weights(layer, x, [transposed_kernel(weight)] + ([] if bias is None else
                                                               [np.asarray(bias, np.float32)]))
    crop = (pad, pad - output_pad)
    if any(crop):
        x = keras.layers.Cropping3D((crop,) * 3, name=_layer_name(name) + "_crop")(x)
    return x


def norm_relu(x):
    return keras.layers.ReLU()(InstanceNorm3D()(x))


def basic_block(x, weights, name, stride):
    """conv 3^3 - IN - ReLU - conv 3^3 - IN, plus the shortcut (conv 1^3 stride - IN where the size changes)."""
    y = norm_relu(conv(x, weights, f"{name}.double_conv.0", stride, 1))
    y = InstanceNorm3D()(conv(y, weights, f"{name}.double_conv.3", 1, 1))
    shortcut = x
    if f"{name}.downsample.0.weight" in weights:
        shortcut = InstanceNorm3D()(conv(x, weights, f"{name}.downsample.0", stride, 0))
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def encoder(inputs, weights):
    """Symbolic encoder maps [init, down0, down1, down2, down3] of normalised volumes [B, X, Y, Z, 1] (the
    outputs of layers named ENCODER_MAPS)."""
    x = norm_relu(conv(inputs, weights, "init.0", 2, 3))
    x = keras.layers.MaxPooling3D(3, 2)(keras.layers.ZeroPadding3D(1)(x))  # values >= 0: zero pad == -inf pad
    maps = [keras.layers.Identity(name=ENCODER_MAPS[0])(x)]
    for level in range(4):
        x = basic_block(maps[-1], weights, f"down{level}.block1", 1 if level == 0 else 2)
        x = basic_block(x, weights, f"down{level}.block2", 1)
        maps.append(keras.layers.Identity(name=ENCODER_MAPS[level + 1])(x))
    return maps


def decoder_block(x, weights, name, stride):
    """conv 1^3 - IN - ReLU, transposed conv 3^3 (stride) - IN - ReLU, conv 1^3 - IN - ReLU."""
    x = norm_relu(conv(x, weights, f"{name}.conv1.0"))
    x = norm_relu(transposed_conv(x, weights, f"{name}.tp_conv.0", stride, 1, stride - 1))
    return norm_relu(conv(x, weights, f"{name}.conv2.0"))


def build_linknet(weights, name="deepbet_linknet"):
    """Keras model: normalised volumes [B, X, Y, Z, 1] (each axis a multiple of 32) -> softmax [B, X, Y, Z, 2]."""
    inputs = keras.Input((None, None, None, 1), name="volume")
    init, *downs = encoder(inputs, weights)
    x = downs[3]
    for level, skip in enumerate((downs[2], downs[1], downs[0], init)):
        x = keras.layers.Add()([decoder_block(x, weights, f"up{level}", 1 if level == 3 else 2), skip])
    x = norm_relu(transposed_conv(x, weights, "tp_conv1.0", 2, 1, 1))
    x = norm_relu(conv(x, weights, "conv.0", 1, 1))
    x = transposed_conv(x, weights, "tp_conv2", 2, 0, 0)
    return keras.Model(inputs, keras.layers.Softmax(axis=-1)(x), name=name)


def check_linknet_shape(shape):
    """ValueError unless every axis of a [X, Y, Z] shape is a positive multiple of 32."""
    if len(shape) != 3 or any(n < SIZE_MULTIPLE or n % SIZE_MULTIPLE for n in shape):
        raise ValueError(f"deepbet's network needs axes that are multiples of {SIZE_MULTIPLE}, got {tuple(shape)}")
