"""Mapping network z -> w."""
import keras
from keras import ops as K

from tf3dstylegan import ops
from tf3dstylegan.config import load_model_config
from tf3dstylegan.layers import EqualizedDense, serializable


def check_width(tensor, expected, what):
    """ValueError unless tensor's last axis has the expected static width."""
    width = tensor.shape[-1]
    if width is not None and int(width) != expected:
        raise ValueError(f"{what} must have shape [batch, {expected}], got {list(tensor.shape)}")


@serializable
class MappingNetwork(keras.Model):
    """z [B, latent_size] (+ labels [B, label_size]) -> ws [B, num_ws, dlatent_size]."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = load_model_config(config)
        self.latent_size, self.dlatent_size, self.num_ws = cfg.latent_size, cfg.dlatent_size, cfg.num_ws
        in_dim = cfg.latent_size
        if cfg.label_size:
            self.label_embed = self.add_weight(name="label_embed", shape=(cfg.label_size, cfg.latent_size),
                                               initializer=keras.initializers.RandomNormal(stddev=1.0))
            in_dim += cfg.latent_size
        self.dense_layers = []
        for i in range(cfg.mapping_layers):
            units = cfg.dlatent_size if i == cfg.mapping_layers - 1 else cfg.mapping_fmaps
            layer = EqualizedDense(units, lrmul=cfg.mapping_lrmul, activation="lrelu", name=f"dense{i}")
            layer.build((None, in_dim))
            self.dense_layers.append(layer)
            in_dim = units
        self.built = True

    def call(self, z, labels=None):
        check_width(z, self.latent_size, "z")
        x = K.cast(z, self.compute_dtype)
        if self.config.label_size:
            if labels is None:
                raise ValueError(f"this network is conditional: labels [batch, {self.config.label_size}] required")
            x = K.concatenate([x, K.matmul(K.cast(labels, x.dtype), K.cast(self.label_embed, x.dtype))], axis=1)
        x = ops.normalize_2nd_moment(x)                 # [B, in_dim]
        for layer in self.dense_layers:
            x = layer(x)                                # [B, units]
        x = K.cast(x, "float32")
        return K.tile(x[:, None], (1, self.num_ws, 1))  # [B, num_ws, dlatent_size]

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}
