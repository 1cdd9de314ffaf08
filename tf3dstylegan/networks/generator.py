"""Generator = mapping + synthesis + tracked w_avg, truncation and training-time style mixing."""
import keras
from keras import ops as K

from tf3dstylegan.config import load_model_config
from tf3dstylegan.layers import serializable
from tf3dstylegan.networks.mapping import MappingNetwork
from tf3dstylegan.networks.synthesis import SynthesisNetwork


@serializable
class Generator(keras.Model):
    """z [B, latent_size] -> volumes [B, X, Y, Z, C] (float32).

    `G(z)` evaluates with truncation_psi=1 and the stored noise (deterministic); the training step's forward pass
    is `training_styles` (w_avg update, style mixing) then `synthesis` with random noise. slab_size: see
    SynthesisNetwork (the last level in slabs: less inference memory, same volumes).
    """

    def __init__(self, config, fused_modconv=False, gradient_checkpointing=False, slab_size=None, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = load_model_config(config)
        self.latent_size, self.dlatent_size, self.num_ws = cfg.latent_size, cfg.dlatent_size, cfg.num_ws
        self.img_shape, self.num_channels = cfg.img_shape, cfg.num_channels
        self.mapping = MappingNetwork(cfg, name="mapping")
        self.synthesis = SynthesisNetwork(cfg, fused_modconv=fused_modconv,
                                          gradient_checkpointing=gradient_checkpointing, slab_size=slab_size,
                                          name="synthesis")
        self.w_avg = self.add_weight(name="w_avg", shape=(cfg.dlatent_size,), initializer="zeros",
                                     trainable=False, aggregation="mean")
        self.built = True

    def truncate(self, ws, psi=1.0, cutoff=None):
        """w_avg + (ws - w_avg) * psi on style layers < cutoff (all when None). ws: [B, num_ws, dlatent_size]."""
        if isinstance(psi, (int, float)) and psi == 1:
            return ws
        layer_psi = K.cast(psi, "float32") * K.ones((self.num_ws,), "float32")
        if cutoff is not None:
            layer_psi = K.where(K.arange(self.num_ws) < cutoff, layer_psi, 1.0)
        w_avg = K.cast(self.w_avg, "float32")
        return w_avg + (K.cast(ws, "float32") - w_avg) * layer_psi[:, None]

    def update_w_avg(self, ws):
        """w_avg <- mean_batch(ws[:, 0]) + (w_avg - mean) * dlatent_avg_beta."""
        batch_avg = K.mean(K.cast(ws[:, 0], "float32"), axis=0)
        self.w_avg.assign(batch_avg + (self.w_avg - batch_avg) * self.config.dlatent_avg_beta)

    def mix_styles(self, ws, ws_other, rng=None):
        """With prob style_mixing_prob, layers >= a random cutoff in [1, num_ws) take ws_other (one draw per batch).
        rng: .uniform(shape, minval, maxval) as keras.random (default: Keras' global seed generator)."""
        uniform = rng.uniform if rng is not None else keras.random.uniform
        mix = uniform((), 0.0, 1.0) < self.config.style_mixing_prob
        cutoff_draw = K.cast(K.floor(uniform((), 1.0, float(self.num_ws))), "int32")
        cutoff = K.where(mix, cutoff_draw, self.num_ws)
        keep = K.arange(self.num_ws) < cutoff                                   # [num_ws]
        return K.where(keep[None, :, None], ws, ws_other)

    def training_styles(self, z, labels=None, rng=None):
        """ws for a training step: map z, update w_avg, mix styles. z: [B, latent_size] -> [B, num_ws, dlatent_size].
        rng: .normal(shape) and .uniform(shape, minval, maxval) as keras.random (default: Keras' global ones)."""
        ws = self.mapping(z, labels)
        self.update_w_avg(ws)
        if self.config.style_mixing_prob > 0:
            normal = rng.normal if rng is not None else keras.random.normal
            ws = self.mix_styles(ws, self.mapping(normal(K.shape(z)), labels), rng)
        return ws

    def call(self, z, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", labels=None, slab_size=None):
        ws = self.truncate(self.mapping(z, labels), truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, slab_size=slab_size)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """A SavedModel whose `serve(z [B, latent_size])` returns volumes (const noise, psi 1). Quiet unless
        verbose (default: TF3DSTYLEGAN_VERBOSE), instead of Keras' listing of every traced tensor."""
        from tf3dstylegan.runtime import verbose as verbose_default
        verbose = verbose_default() if verbose is None else verbose
        if input_signature is None:
            import tensorflow as tf
            input_signature = [tf.TensorSpec([None, self.latent_size], tf.float32, name="z")]
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(),
                "fused_modconv": self.synthesis.fused_modconv,
                "gradient_checkpointing": self.synthesis.gradient_checkpointing,
                "slab_size": self.synthesis.slab_size}
