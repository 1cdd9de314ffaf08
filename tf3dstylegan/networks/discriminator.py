"""ResNet / orig / skip discriminator: volumes [B, X, Y, Z, C] -> scores [B, 1]."""
import functools

import keras
import numpy as np
from keras import ops as K

from tf3dstylegan.config import load_model_config
from tf3dstylegan.layers import Downsample3D, EqualizedConv3D, EqualizedDense, MinibatchStddev3D, serializable
from tf3dstylegan.networks.synthesis import level_name


@serializable
class Discriminator(keras.Model):
    """Levels R..3 (FromImage at R, or every level for 'skip'; Conv0, Conv1_down, resnet Skip), then the
    base block: minibatch stddev, Conv, Dense0 and the Output layer (label-projected when conditional)."""

    def __init__(self, config, gradient_checkpointing=False, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = load_model_config(config)
        self.gradient_checkpointing = gradient_checkpointing
        self.img_shape, self.num_channels = cfg.img_shape, cfg.num_channels
        arch, base, res = cfg.d_architecture, cfg.base_size, cfg.resolution_log2

        def shape_at(r, channels):
            return (None,) + tuple(b * 2 ** (r - 2) for b in base) + (channels,)

        def built(layer, shape):
            layer.build(shape)
            return layer

        self.from_images, self.conv0s, self.conv1s, self.skips = {}, {}, {}, {}  # keyed by str(level)
        channels = None
        for r in range(res, 1, -1):
            name = level_name(base, r)
            if arch == "skip" or r == res:
                out = cfg.nf(r - 1) if r > 2 else cfg.nf(1)
                self.from_images[str(r)] = built(EqualizedConv3D(out, 1, activation="lrelu", name=name + "_from_image"),
                                            shape_at(r, cfg.num_channels))
                channels = out
            if r > 2:
                conv0 = built(EqualizedConv3D(cfg.nf(r - 1), 3, activation="lrelu", name=name + "_conv0"),
                              shape_at(r, channels))
                conv1 = built(EqualizedConv3D(cfg.nf(r - 2), 3, down=True, activation="lrelu",
                                              name=name + "_conv1_down"), shape_at(r, cfg.nf(r - 1)))
                if arch == "resnet":
                    self.skips[str(r)] = built(EqualizedConv3D(cfg.nf(r - 2), 1, down=True, use_bias=False,
                                                          name=name + "_skip"), shape_at(r, channels))
                self.conv0s[str(r)], self.conv1s[str(r)] = conv0, conv1
                channels = cfg.nf(r - 2)
        self.downsample = Downsample3D(name="downsample")
        self.mbstd = None
        if cfg.mbstd_group_size > 1:
            self.mbstd = MinibatchStddev3D(cfg.mbstd_group_size, cfg.mbstd_num_features, name="mbstd")
            channels += cfg.mbstd_num_features
        self.base_conv = built(EqualizedConv3D(cfg.nf(1), 3, activation="lrelu", name=level_name(base, 2) + "_conv"),
                               shape_at(2, channels))
        self.dense0 = built(EqualizedDense(cfg.nf(0), activation="lrelu", name=level_name(base, 2) + "_dense0"),
                            shape_at(2, cfg.nf(1)))
        self.output_layer = built(EqualizedDense(max(cfg.label_size, 1), name="output"), (None, cfg.nf(0)))
        self.built = True

    def call(self, volumes, labels=None, checkpoint=None):
        """checkpoint: override gradient_checkpointing for this call (False for R1/R2, which need
        second-order gradients that TensorFlow's recompute_grad does not support)."""
        expected = tuple(self.img_shape) + (self.num_channels,)
        if len(volumes.shape) != 5 or tuple(volumes.shape[1:]) != expected:
            raise ValueError(f"volumes must have shape [batch, {', '.join(map(str, expected))}], "
                             f"got {list(volumes.shape)}")
        img = K.cast(volumes, self.compute_dtype)
        use_checkpoint = self.gradient_checkpointing if checkpoint is None else checkpoint
        x = None
        for r in range(self.config.resolution_log2, 1, -1):
            if str(r) in self.from_images:
                t = self.from_images[str(r)](img)
                x = t if x is None else x + t
            if r == 2:
                break
            block = functools.partial(self._block, str(r))
            x = keras.remat(block)(x) if use_checkpoint else block(x)
            if self.config.d_architecture == "skip":
                img = self.downsample(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.dense0(self.base_conv(x))
        scores = self.output_layer(x)                                           # [B, max(labels, 1)]
        if self.config.label_size:
            if labels is None:
                raise ValueError(f"this network is conditional: labels [batch, {self.config.label_size}] required")
            scores = K.sum(scores * K.cast(labels, scores.dtype), axis=1, keepdims=True)
        return K.cast(scores, "float32")

    def _block(self, key, x):
        """One level: Conv0, Conv1_down (and the resnet skip)."""
        y = self.conv1s[key](self.conv0s[key](x))
        if key in self.skips:
            y = (y + self.skips[key](x)) * (1.0 / np.sqrt(2))
        return y

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(),
                "gradient_checkpointing": self.gradient_checkpointing}
