"""Training of 3D-StyleGAN under tf.distribute: `train(config, data, outdir, ...)` and its parts."""
from tf3dstylegan.training.loop import NonFiniteLossError, load_run_networks, resolve_run, train

__all__ = ["NonFiniteLossError", "load_run_networks", "resolve_run", "train"]
