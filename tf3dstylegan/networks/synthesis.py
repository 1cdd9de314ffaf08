"""Synthesis network ws -> volume: constant block, style layers, architectures orig/skip/resnet."""
import keras
import numpy as np
from keras import ops as K

from tf3dstylegan import backend

from tf3dstylegan.config import load_model_config
from tf3dstylegan.layers import (ConstantInput, EqualizedConv3D, SynthesisLayer, ToImage, Upsample3D,
                                 check_noise_mode, serializable)
from tf3dstylegan.networks.mapping import check_width


# Half-resolution rows each side of a slab that make it exact: an up-sampled row j reads input rows
# ceil(j/2) - 2 .. floor(j/2) + 1 (transposed 3-tap conv, then the 5-tap FIR), and Conv1 one row more.
SLAB_HALO = 2


def level_name(base_size, r):
    """Name of resolution level r (r = 2 is the constant block), e.g. 'b10x12x14'."""
    return "b" + "x".join(str(b * 2 ** (r - 2)) for b in base_size)


def level_style_indices(r):
    """Style indices (Conv0_up, Conv1) of up-sampling level r >= 3: (2r-5, 2r-4); the base conv is 0."""
    return 2 * r - 5, 2 * r - 4


def to_image_style_index(r):
    """Style index of level r's ToImage: 2r-3, the one after its Conv1 (shared with level r+1's Conv0_up)."""
    return 2 * r - 3


def style_layer_level(j):
    """Level of style layer j: 2 for the base conv (j = 0), else the r whose level_style_indices hold j."""
    return 2 if j == 0 else (j + 5) // 2


def slab_windows(size, slab_size, halo=SLAB_HALO):
    """How to compute an up-sampling level of `size` rows (first spatial axis) in slabs of `slab_size`.

    One tuple per output slab [start, stop): (lo_start, lo_stop) the rows of the half-resolution input
    it reads, and (crop, stop - start) where the slab lies in that window's 2 * (lo_stop - lo_start) rows.
    Every window has the same number of rows (shifted inwards at the ends), so every slab runs the same
    kernels on the same shapes.
    """
    low = size // 2
    slabs = [(start, min(start + slab_size, size)) for start in range(0, size, slab_size)]
    width = min(low, max(-(-stop // 2) - start // 2 + 2 * halo for start, stop in slabs))
    windows = []
    for start, stop in slabs:
        lo_start = min(max(0, start // 2 - halo), low - width)
        windows.append((lo_start, lo_start + width, start - 2 * lo_start, stop - start))
    return windows


@serializable
class SynthesisNetwork(keras.Model):
    """ws [B, num_ws, dlatent_size] -> volumes [B, X, Y, Z, C].

    Style index of each layer: base conv 0, level r's convolutions level_style_indices(r), its ToImage
    to_image_style_index(r) (only the last level has one except in 'skip'). Noise j belongs to style layer j.
    slab_size: compute the full-resolution level in slabs of this many rows along the first axis, one
    after the other, so that its feature maps never exist whole (inference memory); the result is the
    same. None or 0: the whole volume at once.
    """

    def __init__(self, config, fused_modconv=False, gradient_checkpointing=False, slab_size=None, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = load_model_config(config)
        self.fused_modconv, self.gradient_checkpointing = fused_modconv, gradient_checkpointing
        self.slab_size = check_slab_size(slab_size)
        self.num_ws, self.dlatent_size, self.img_shape = cfg.num_ws, cfg.dlatent_size, cfg.img_shape
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
        """The stored noise maps, one per style layer: Keras variables of shape [1, x, y, z, 1]."""
        return [layer.noise_buffer for layer in self.noise_layers]

    @property
    def noise_shapes(self):
        return [tuple(v.shape) for v in self.noise_buffers]

    def call(self, ws, noise_mode="const", noise=None, checkpoint=None, slab_size=None):
        """checkpoint: override gradient_checkpointing for this call (False where second-order gradients
        are needed, e.g. the path-length regulariser: TensorFlow's recompute_grad supports first order only).
        slab_size: override the network's slab_size for this call (0: whole volume)."""
        check_noise_mode(noise_mode)
        slab_size = self.slab_size if slab_size is None else check_slab_size(slab_size)
        check_width(ws, self.dlatent_size, "ws")
        if len(ws.shape) != 3 or (ws.shape[1] is not None and ws.shape[1] != self.num_ws):
            raise ValueError(f"ws must have shape [batch, {self.num_ws}, {self.dlatent_size}], got {list(ws.shape)}")
        if noise is not None and len(noise) != len(self.style_layers):
            raise ValueError(f"noise must be a list of {len(self.style_layers)} tensors, got {len(noise)}")
        noise = list(noise) if noise is not None else [None] * len(self.style_layers)
        ws = K.cast(ws, "float32")
        x = self.const(ws)                                   # [B, b0, b1, b2, nf(1)]
        x = self.style_layers[0](x, ws[:, 0], noise_mode=noise_mode, noise=noise[0])
        img = None
        last = self.config.resolution_log2
        for r in range(2, last + 1):
            to_image = self.to_images.get(str(r))
            if r > 2:
                if img is not None:
                    img = self.upsample(img)
                level_noise = tuple(noise[i] for i in level_style_indices(r))
                if r == last and 0 < slab_size < self.img_shape[0]:  # its feature maps never exist whole
                    y = self._last_level_in_slabs(x, ws, noise_mode, level_noise, checkpoint, slab_size)
                    return K.cast(y if img is None else img + y, "float32")
                x = self._block(r, x, ws, noise_mode, *level_noise, checkpoint)
            if to_image is not None:
                y = to_image(x, ws[:, to_image_style_index(r)])
                img = y if img is None else img + y
        return K.cast(img, "float32")

    def _block(self, r, x, ws, noise_mode, noise0, noise1, checkpoint):
        """Level r: Conv0_up, Conv1 (and the resnet skip). With gradient checkpointing its activations are
        recomputed in the backward pass; random noise is then drawn outside so both passes see the same."""
        i0, i1 = level_style_indices(r)
        checkpoint = self.gradient_checkpointing if checkpoint is None else checkpoint
        if checkpoint and noise_mode == "random":
            noise0, noise1 = (n if n is not None else self.style_layers[i].noise.random_noise(K.shape(x)[0])
                              for n, i in zip((noise0, noise1), (i0, i1), strict=True))
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
            return keras.remat(block)(x, ws, *given)
        return block(x, ws, *given)

    def _last_level_in_slabs(self, x, ws, noise_mode, level_noise, checkpoint, slab_size):
        """The last level's block and ToImage, slab by slab along the first axis (see slab_windows).

        x: [B, X/2, Y/2, Z/2, C] -> [B, X, Y, Z, num_channels]. The noise maps are drawn or taken whole
        (they have one channel) and sliced; each slab starts after the previous one has finished, so
        only one slab's feature maps are alive at a time. (Slabbing the levels before too measured worse:
        their outputs must then be put together whole.)
        """
        r = self.config.resolution_log2
        batch = K.shape(x)[0]
        maps = [self.style_layers[i].noise.noise_map(batch, noise_mode, n)
                for i, n in zip(level_style_indices(r), level_noise, strict=True)]
        slabs = []
        for lo_start, lo_stop, crop, length in slab_windows(self.img_shape[0], slab_size):
            window = x[:, lo_start:lo_stop]                                       # [B, rows, Y/2, Z/2, C]
            if slabs and backend.is_tensorflow():  # each slab after the previous one: one slab's maps at a time
                from tf3dstylegan.backend.tensorflow.ops import run_after
                window = run_after(slabs[-1:], window)
            window_noise = [None if m is None else m[:, 2 * lo_start:2 * lo_stop] for m in maps]
            slabs.append(self._slab(window, ws, noise_mode, window_noise, checkpoint, crop, length))
        return K.concatenate(slabs, axis=1)

    def _slab(self, window, ws, noise_mode, window_noise, checkpoint, crop, length):
        # [B, rows, Y/2, Z/2, C] -> [B, length, Y, Z, num_channels]. A function of its own so that, run
        # eagerly, the slab's feature maps are freed before the next slab starts.
        r = self.config.resolution_log2
        y = self._block(r, window, ws, noise_mode, *window_noise, checkpoint)[:, crop:crop + length]
        return self.to_images[str(r)](y, ws[:, to_image_style_index(r)])

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "fused_modconv": self.fused_modconv,
                "gradient_checkpointing": self.gradient_checkpointing, "slab_size": self.slab_size}


def check_slab_size(slab_size):
    """slab_size as an int >= 0 (0: no slabs); ValueError otherwise."""
    if slab_size is None:
        return 0
    if isinstance(slab_size, bool) or not isinstance(slab_size, (int, np.integer)) or slab_size < 0:
        raise ValueError(f"slab_size must be a non-negative integer (0 or None: whole volume), got {slab_size!r}")
    return int(slab_size)
