"""Training of 3D-StyleGAN under tf.distribute: `train(config, data, outdir, ...)` and its parts."""
from tf3dstylegan.training.loop import NonFiniteLossError, resolve_run, train

__all__ = ["NonFiniteLossError", "resolve_run", "train"]
