"""Synthesis network ws -> volume (spec §3.6): constant block, style layers, architectures orig/skip/resnet."""
import numpy as np
import keras
import tensorflow as tf

from tf3dstylegan.config import load_config
from tf3dstylegan.layers import (ConstantInput, EqualizedConv3D, SynthesisLayer, ToImage, Upsample3D,
                                 check_noise_mode, serializable)
from tf3dstylegan.networks.mapping import check_width


def level_name(base_size, r):
    """Name of resolution level r (r = 2 is the constant block), e.g. 'b10x12x14'."""
    return "b" + "x".join(str(b * 2 ** (r - 2)) for b in base_size)


@serializable
class SynthesisNetwork(keras.Model):
    """ws [B, num_ws, w_dim] -> volumes [B, X, Y, Z, C].

    Style index of each layer: base conv 0; level r (3..R) Conv0_up 2r-5 and Conv1 2r-4; the output
    layer (ToImage) 2R-3 (every level r uses 2r-3 for 'skip'). Noise j belongs to style layer j.
    """

    def __init__(self, config, fused_modconv=False, gradient_checkpointing=False, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = load_config(config)
        self.fused_modconv, self.gradient_checkpointing = fused_modconv, gradient_checkpointing
        self.num_ws, self.w_dim, self.img_shape = cfg.num_ws, cfg.dlatent_size, cfg.img_shape
        arch, base, res = cfg.g_architecture, cfg.base_size, cfg.resolution_log2
        use_noise = not cfg.no_noise
        w_shape = (None, cfg.dlatent_size)

        def shape_at(r, channels):
            return (None,) + tuple(b * 2 ** (r - 2) for b in base) + (channels,)

        self.const = ConstantInput(cfg.nf(1), base, name="const")
        self.const.build()
        self.style_layers = []    # every SynthesisLayer, in style-index order
        self.skips, self.to_images = {}, {}  # keyed by str(level): checkpoints need string keys
        base_conv = SynthesisLayer(cfg.nf(1), 3, use_noise=use_noise, fused=fused_modconv,
                                   name=level_name(base, 2) + "_conv")
        base_conv.build(shape_at(2, cfg.nf(1)), w_shape)
        self.style_layers.append(base_conv)
        channels = cfg.nf(1)
        for r in range(2, res + 1):
            name = level_name(base, r)
            if r > 2:
                conv0 = SynthesisLayer(cfg.nf(r - 1), 3, up=True, use_noise=use_noise, fused=fused_modconv,
                                       name=name + "_conv0_up")
                conv0.build(shape_at(r - 1, channels), w_shape)
                conv1 = SynthesisLayer(cfg.nf(r - 1), 3, use_noise=use_noise, fused=fused_modconv,
                                       name=name + "_conv1")
                conv1.build(shape_at(r, cfg.nf(r - 1)), w_shape)
                self.style_layers += [conv0, conv1]
                if arch == "resnet":
                    skip = EqualizedConv3D(cfg.nf(r - 1), 1, up=True, use_bias=False, name=name + "_skip")
                    skip.build(shape_at(r - 1, channels))
                    self.skips[str(r)] = skip
                channels = cfg.nf(r - 1)
            if arch == "skip" or r == res:
                to_image = ToImage(cfg.num_channels, fused=fused_modconv, name=name + "_to_image")
                to_image.build(shape_at(r, channels), w_shape)
                self.to_images[str(r)] = to_image
        self.upsample = Upsample3D(name="upsample")
        self.built = True

    @property
    def noise_layers(self):
        return [layer.noise for layer in self.style_layers]

    @property
    def noise_buffers(self):
        """The stored noise maps, one per style layer: tf.Variables of shape [1, x, y, z, 1]."""
        return [layer.noise_buffer for layer in self.noise_layers]

    @property
    def noise_shapes(self):
        return [tuple(v.shape) for v in self.noise_buffers]

    def call(self, ws, noise_mode="const", noise=None, checkpoint=None):
        """checkpoint: override gradient_checkpointing for this call (False where second-order gradients
        are needed, e.g. the path-length regulariser: tf.recompute_grad supports first order only)."""
        check_noise_mode(noise_mode)
        check_width(ws, self.w_dim, "ws")
        if ws.shape.rank != 3 or (ws.shape[1] is not None and ws.shape[1] != self.num_ws):
            raise ValueError(f"ws must have shape [batch, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise is not None and len(noise) != len(self.style_layers):
            raise ValueError(f"noise must be a list of {len(self.style_layers)} tensors, got {len(noise)}")
        noise = list(noise) if noise is not None else [None] * len(self.style_layers)
        ws = tf.cast(ws, tf.float32)
        x = self.const(ws)                                   # [B, b0, b1, b2, nf(1)]
        x = self.style_layers[0](x, ws[:, 0], noise_mode=noise_mode, noise=noise[0])
        img = None
        for r in range(2, self.config.resolution_log2 + 1):
            if r > 2:
                x = self._block(r, x, ws, noise_mode, noise[2 * r - 5], noise[2 * r - 4], checkpoint)
                if img is not None:
                    img = self.upsample(img)
            if str(r) in self.to_images:
                y = self.to_images[str(r)](x, ws[:, 2 * r - 3])
                img = y if img is None else img + y
        return tf.cast(img, tf.float32)

    def _block(self, r, x, ws, noise_mode, noise0, noise1, checkpoint):
        """Level r: Conv0_up, Conv1 (and the resnet skip). With gradient checkpointing its activations are
        recomputed in the backward pass; random noise is then drawn outside so both passes see the same."""
        i0, i1 = 2 * r - 5, 2 * r - 4
        checkpoint = self.gradient_checkpointing if checkpoint is None else checkpoint
        if checkpoint and noise_mode == "random":
            noise0, noise1 = (n if n is not None else self.style_layers[i].noise.random_noise(tf.shape(x)[0])
                              for n, i in zip((noise0, noise1), (i0, i1)))
        given = [n for n in (noise0, noise1) if n is not None]

        def block(x, ws, *given_noise):
            given_noise = list(given_noise)
            n0 = given_noise.pop(0) if noise0 is not None else None
            n1 = given_noise.pop(0) if noise1 is not None else None
            y = self.style_layers[i0](x, ws[:, i0], noise_mode=noise_mode, noise=n0)
            y = self.style_layers[i1](y, ws[:, i1], noise_mode=noise_mode, noise=n1)
            if str(r) in self.skips:
                y = (y + self.skips[str(r)](x)) * (1.0 / np.sqrt(2))
            return y

        if checkpoint:
            return tf.recompute_grad(block)(x, ws, *given)
        return block(x, ws, *given)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "fused_modconv": self.fused_modconv,
                "gradient_checkpointing": self.gradient_checkpointing}
