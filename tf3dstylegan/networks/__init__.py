"""Keras models of 3D-StyleGAN."""
from tf3dstylegan.networks.discriminator import Discriminator
from tf3dstylegan.networks.generator import Generator
from tf3dstylegan.networks.mapping import MappingNetwork
from tf3dstylegan.networks.synthesis import SynthesisNetwork

__all__ = ["Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork", "build_discriminator",
           "build_generator", "build_networks"]


def build_generator(config="2mm-fd16", fused_modconv=False, gradient_checkpointing=False, slab_size=None,
                    **overrides):
    """A Generator for a preset name, a config file, a dict or a Config (fields overridable).

    fused_modconv: one grouped convolution per modulated layer (XLA on the CPU); gradient_checkpointing:
    recompute each synthesis block's activations in the backward pass (less memory, more compute);
    slab_size: compute the full-resolution level in slabs of this many rows (less inference memory).
    """
    from tf3dstylegan.config import load_model_config
    return Generator(load_model_config(config, **overrides), fused_modconv=fused_modconv,
                     gradient_checkpointing=gradient_checkpointing, slab_size=slab_size, name="generator")


def build_discriminator(config="2mm-fd16", gradient_checkpointing=False, **overrides):
    """A Discriminator for a preset name, a config file, a dict or a Config (fields overridable)."""
    from tf3dstylegan.config import load_model_config
    return Discriminator(load_model_config(config, **overrides), gradient_checkpointing=gradient_checkpointing,
                         name="discriminator")


def build_networks(config="2mm-fd16", gradient_checkpointing=False, **overrides):
    """(G, D) for a preset name, a config file, a dict or a Config."""
    from tf3dstylegan.config import load_model_config
    cfg = load_model_config(config, **overrides)
    return (build_generator(cfg, gradient_checkpointing=gradient_checkpointing),
            build_discriminator(cfg, gradient_checkpointing=gradient_checkpointing))
