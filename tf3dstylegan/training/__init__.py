"""Training of 3D-StyleGAN on any Keras backend: `train(config, data, outdir, **options)` and its parts."""
from tf3dstylegan.training.loop import NonFiniteLossError, TrainingInterrupted, train
from tf3dstylegan.training.options import TrainingOptions
from tf3dstylegan.training.runs import resolve_run

__all__ = ["NonFiniteLossError", "TrainingInterrupted", "TrainingOptions", "resolve_run", "train"]
