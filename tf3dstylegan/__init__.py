"""tf3dstylegan: 3D-StyleGAN (Hong, Marinescu et al. 2021) in Keras 3."""
__version__ = "0.3.0"  # the one version number (pyproject.toml reads it)

from tf3dstylegan import runtime  # noqa: E402

runtime.quiet_startup()  # Keras and its backend, without TensorFlow's C++ start-up notices

from tf3dstylegan.config import Config, available_presets, load_config  # noqa: E402


def build_networks(config="2mm-fd16", **overrides):
    """(G, D) Keras models for a preset name, a config file, a dict or a Config."""
    from tf3dstylegan.networks import build_networks as _build
    return _build(config, **overrides)


def load_network(path, **kwargs):
    """Load a legacy TF1 pickle, a `.keras` file or a training run folder (see tf3dstylegan.loading)."""
    from tf3dstylegan.loading import load_network as _load
    return _load(path, **kwargs)


__all__ = ["Config", "available_presets", "build_networks", "load_config", "load_network"]
