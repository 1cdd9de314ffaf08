"""MedicalNet's 3D ResNet-50 (Med3D, Chen et al. 2019, MIT) as a Keras feature extractor: pooled 2048-D.

The network of `resnet_50_23dataset.pth` (trained on 23 medical segmentation datasets): conv 7³ stride 2
pad 3 -> BN -> ReLU -> max-pool 3³ stride 2 pad 1, then four stages of bottleneck blocks (3, 4, 6, 3
blocks; widths 64, 128, 256, 512, expansion 4): stage 2 halves the size, stages 3 and 4 keep it and dilate
their 3³ convolutions by 2 and 4. Bottleneck = 1³ conv -> BN -> ReLU -> 3³ conv (the stride, dilation d,
padding d) -> BN -> ReLU -> 1³ conv -> BN, plus the shortcut (type B: 1³ conv with the stride -> BN where
the shape changes, identity elsewhere), then ReLU. Every conv is bias-free; each batch norm (running
statistics, eps 1e-5) is folded into its conv. Features: the global mean of the last stage (2048-D).
The builder reads the width and the number of blocks per stage from the weights, so a narrow copy of
the network (tests/data/medicalnet_tiny.pth) goes through the same code.

Layout: torch's [B, 1, D, H, W] is our channels-last [B, D, H, W, 1] with the spatial axes unchanged.
Preprocessing (`medicalnet_input`) follows HA-GAN's evaluation/fid_score.py, the protocol the 3D GAN and
diffusion papers that report this FID follow: volumes in [-1, 1] as the generator makes them, no
intensity normalisation or resizing, and the array axes in SimpleITK order, [D, H, W] = [Z, Y, X] of our
RAS [X, Y, Z] volumes.
"""
import re

import numpy as np
import keras

from tf3dstylegan.metrics.batched import BatchedModel

BN_EPSILON = 1e-5
STAGE_STRIDES = (1, 2, 1, 1)
STAGE_DILATIONS = (1, 1, 2, 4)
PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
MAX_ELEMENTS = 1 << 27  # MedicalNet's ResNet-50 has 46 million weights, its largest (ResNet-200) about twice that


class MedicalNetWeightsError(ValueError):
    """The weights are not those of a MedicalNet bottleneck ResNet."""


def backbone_weights(state):
    """{name: float32 array} of the backbone from a loaded checkpoint.

    Accepts a state dict or {'state_dict': ...}; strips DataParallel's 'module.' prefix; drops the
    segmentation head (`conv_seg.*`) and the batch norms' `num_batches_tracked` counters."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MedicalNetWeightsError(f"expected a state dict, got {type(state).__name__}")
    weights = {}
    for name, value in state.items():
        name = str(name)
        name = name[len("module."):] if name.startswith("module.") else name
        if name.startswith(PREFIXES) and not name.endswith("num_batches_tracked"):
            if not isinstance(value, np.ndarray):
                raise MedicalNetWeightsError(f"{name} is a {type(value).__name__}, not a tensor")
            weights[name] = value.astype(np.float32)
    if "conv1.weight" not in weights:
        raise MedicalNetWeightsError("no conv1.weight: not MedicalNet ResNet weights")
    return weights


def read_backbone_weights(path):
    """Backbone weights from a `.pth` (torch.save, read without torch) or `.npz` file, making no more arrays than
    MAX_ELEMENTS (checked before each allocation)."""
    from tf3dstylegan.metrics import torchsave, weights
    if str(path).endswith(".npz"):
        return backbone_weights(weights.load_npz(path, MAX_ELEMENTS, MedicalNetWeightsError))
    return backbone_weights(torchsave.load(path, MAX_ELEMENTS))


def stage_depths(weights):
    """Blocks per stage, read from the `layerS.B.conv1.weight` names."""
    depths = [0, 0, 0, 0]
    for name in weights:
        match = re.fullmatch(r"layer([1-4])\.(\d+)\.conv1\.weight", name)
        if match:
            stage = int(match.group(1)) - 1
            depths[stage] = max(depths[stage], int(match.group(2)) + 1)
    if not all(depths) or "layer1.0.conv3.weight" not in weights:
        raise MedicalNetWeightsError(f"expected four stages of bottleneck blocks, found blocks {depths}")
    return depths


class _Builder:
    """Creates the Keras layers from torch-named weights, recording which weights it used."""

    def __init__(self, weights):
        self.weights, self.used = weights, set()

    def take(self, name):
        if name not in self.weights:
            raise MedicalNetWeightsError(f"missing weight {name}")
        self.used.add(name)
        return np.asarray(self.weights[name], np.float64)

    def conv_bn(self, x, conv, bn, stride=1, dilation=1, relu=True):
        """torch Conv3d `conv` (weight [out, in, k, k, k], padding dilation * (k // 2)) -> BatchNorm `bn`."""
        weight = self.take(f"{conv}.weight")
        scale = self.take(f"{bn}.weight") / np.sqrt(self.take(f"{bn}.running_var") + BN_EPSILON)
        bias = self.take(f"{bn}.bias") - self.take(f"{bn}.running_mean") * scale
        kernel = weight.transpose(2, 3, 4, 1, 0) * scale  # [k, k, k, in, out]
        pad = dilation * (weight.shape[2] // 2)
        if pad:
            x = keras.layers.ZeroPadding3D(pad)(x)
        layer = keras.layers.Conv3D(weight.shape[0], weight.shape[2:], strides=stride, dilation_rate=dilation,
                                    padding="valid", name=conv.replace(".", "_"))
        x = layer(x)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        return keras.layers.ReLU()(x) if relu else x

    def bottleneck(self, x, name, stride, dilation):
        y = self.conv_bn(x, f"{name}.conv1", f"{name}.bn1")
        y = self.conv_bn(y, f"{name}.conv2", f"{name}.bn2", stride=stride, dilation=dilation)
        y = self.conv_bn(y, f"{name}.conv3", f"{name}.bn3", relu=False)
        shortcut = x
        if f"{name}.downsample.0.weight" in self.weights:
            shortcut = self.conv_bn(x, f"{name}.downsample.0", f"{name}.downsample.1", stride=stride, relu=False)
        return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def build_resnet(weights):
    """Keras model: preprocessed volumes [B, D, H, W, 1] -> pooled last-stage features [B, C]."""
    builder = _Builder(weights)
    depths = stage_depths(weights)
    inputs = keras.Input((None, None, None, 1), name="volume")
    x = builder.conv_bn(inputs, "conv1", "bn1", stride=2)
    x = keras.layers.MaxPooling3D(3, 2)(keras.layers.ZeroPadding3D(1)(x))  # after ReLU: zero pad == -inf pad
    for stage, (depth, stride, dilation) in enumerate(zip(depths, STAGE_STRIDES, STAGE_DILATIONS)):
        for block in range(depth):
            x = builder.bottleneck(x, f"layer{stage + 1}.{block}", stride if block == 0 else 1, dilation)
    unused = sorted(set(weights) - builder.used)
    if unused:
        raise MedicalNetWeightsError(f"weights not used by the bottleneck ResNet: {unused[:5]}")
    features = keras.layers.GlobalAveragePooling3D(name="pooled")(x)
    return keras.Model(inputs, features, name="medicalnet_resnet")


def medicalnet_input(volumes):
    """[-1, 1] volumes [N, X, Y, Z, 1] -> network input [N, Z, Y, X, 1] (HA-GAN's protocol), float32."""
    volumes = np.asarray(volumes, np.float32)
    if volumes.ndim != 5 or volumes.shape[-1] != 1:
        raise ValueError(f"MedicalNet input must be [N, X, Y, Z, 1], got {volumes.shape}")
    return np.ascontiguousarray(volumes.transpose(0, 3, 2, 1, 4))


class MedicalNetFeatures(BatchedModel):
    """Callable: [-1, 1] volumes [N, X, Y, Z, 1] -> pooled features [N, 2048] (float64)."""

    def __init__(self, weights, batch_size=2):
        super().__init__(build_resnet(weights if isinstance(weights, dict) else read_backbone_weights(weights)), batch_size)

    def encode(self, inputs):
        """Features of already-preprocessed inputs [N, D, H, W, 1]."""
        return self.features(inputs)

    def __call__(self, volumes):
        return self.encode(medicalnet_input(volumes))
