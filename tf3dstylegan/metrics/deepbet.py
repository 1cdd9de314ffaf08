"""Encoder of deepbet's 3D brain-extraction network (LinkNet3d, `deepbet==1.0.2`, MIT) as a Keras model.

The network (`data/models/model.pt`, a traced TorchScript module; weights converted to `.npz` by
`tf3dstylegan.metrics.weights`) was trained on T1 brain MRI. Its encoder is a 3D ResNet-18:
`init` = conv 7^3 stride 2 pad 3 (no bias) -> InstanceNorm (eps 1e-5, no affine) -> ReLU -> max-pool 3^3
stride 2 pad 1; then `down0..down3`, each two basic blocks (conv3^3-IN-ReLU-conv3^3-IN + shortcut, ReLU);
`down1..3` halve the size in their first block (shortcut: conv 1^3 stride 2 -> IN). Channels 16-32-64-128.
The 3D FID uses the global mean of the `down3` output: 128-D features. Checked against the TorchScript
module with `bench/check_inception_port.py`: max |keras - torch| / max |torch| = 8.1e-7 (40x48x56) and
1.9e-6 (80x96x112).

Torch's [B, C, D, H, W] with D, H, W = the RAS volume axes X, Y, Z (deepbet feeds `as_closest_canonical`
data) maps to our channels-last [B, X, Y, Z, C] without any transposition of the spatial axes.
Inputs are normalised as deepbet does: clip to the 0.5/99.5 % quantiles, scale to [0, 1], standardise,
then 0.226 * x + 0.449.
"""
import numpy as np
import tensorflow as tf
import keras

from tf3dstylegan.metrics.batched import BatchedModel, weight_dict

IN_EPSILON = 1e-5
FEATURE_DIM = 128


class InstanceNorm3D(keras.layers.Layer):
    """Per-sample, per-channel normalisation over X, Y, Z (biased variance), no affine."""

    def call(self, x):  # [B, X, Y, Z, C]
        mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + IN_EPSILON)


def _conv(x, weights, name, stride, pad):
    """Torch Conv3d `name` (weight [out, in, kx, ky, kz], no bias), symmetric zero padding `pad`."""
    weight = np.asarray(weights[f"{name}.weight"], np.float32)
    if pad:
        x = keras.layers.ZeroPadding3D(pad)(x)
    conv = keras.layers.Conv3D(weight.shape[0], weight.shape[2:], strides=stride, padding="valid",
                               use_bias=False, name=name.replace(".", "_"))
    x = conv(x)
    conv.set_weights([weight.transpose(2, 3, 4, 1, 0)])  # [kx, ky, kz, in, out]
    return x


def _basic_block(x, weights, name, stride):
    y = _conv(x, weights, f"{name}.double_conv.0", stride, 1)
    y = keras.layers.ReLU()(InstanceNorm3D()(y))
    y = InstanceNorm3D()(_conv(y, weights, f"{name}.double_conv.3", 1, 1))
    shortcut = x
    if f"{name}.downsample.0.weight" in weights:
        shortcut = InstanceNorm3D()(_conv(x, weights, f"{name}.downsample.0", stride, 0))
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def build_encoder(weights):
    """Keras model: normalised volumes [B, X, Y, Z, 1] -> pooled `down3` features [B, 128]."""
    inputs = keras.Input((None, None, None, 1), name="volume")
    x = keras.layers.ReLU()(InstanceNorm3D()(_conv(inputs, weights, "init.0", 2, 3)))
    x = keras.layers.MaxPooling3D(3, 2)(keras.layers.ZeroPadding3D(1)(x))  # values >= 0: zero pad == -inf pad
    for level in range(4):
        x = _basic_block(x, weights, f"down{level}.block1", 1 if level == 0 else 2)
        x = _basic_block(x, weights, f"down{level}.block2", 1)
    features = keras.layers.GlobalAveragePooling3D(name="pooled")(x)
    return keras.Model(inputs, features, name="deepbet_encoder")


def down3_size(n):
    """Length of an axis of n voxels after the encoder (init conv, max-pool, three stride-2 blocks)."""
    n = (n - 1) // 2 + 1  # conv 7, stride 2, pad 3
    for _ in range(4):  # max-pool 3 / conv 3, stride 2, pad 1
        n = (n - 1) // 2 + 1
    return n


MIN_AXIS = 33  # smallest axis with down3_size >= 2: instance norm over a single voxel gives only zeros


def deepbet_normalize(volumes):
    """[-1, 1] volumes [B, X, Y, Z, 1] -> deepbet's input normalisation, per volume (float32)."""
    x = (np.asarray(volumes, np.float32) + 1.0) / 2.0
    out = np.empty_like(x)
    for i, v in enumerate(x):
        low, high = np.quantile(v, [0.005, 0.995])
        v = np.clip((v - low) / max(high - low, 1e-8), 0.0, 1.0)
        out[i] = 0.226 * (v - v.mean()) / max(v.std(ddof=1), 1e-8) + 0.449
    return out


class DeepbetFeatures(BatchedModel):
    """Callable: [-1, 1] volumes [N, X, Y, Z, 1] -> 128-D encoder features [N, 128] (float64)."""

    def __init__(self, weights, batch_size=4):
        super().__init__(build_encoder(weight_dict(weights)), batch_size)

    def encode(self, normalized):
        """Features of already-normalised volumes."""
        x = np.asarray(normalized, np.float32)
        if x.ndim != 5 or x.shape[-1] != 1:
            raise ValueError(f"deepbet input must be [N, X, Y, Z, 1], got {x.shape}")
        if min(x.shape[1:4]) < MIN_AXIS:
            raise ValueError(f"deepbet features need every axis >= {MIN_AXIS} voxels, got {x.shape[1:4]}")
        return self.features(x)

    def __call__(self, volumes):
        return self.encode(deepbet_normalize(volumes))
