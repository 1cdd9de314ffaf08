"""The Keras backend this process runs on, and where each backend's own code lives.

The package's math is written once, in `keras.ops` (`tf3dstylegan.ops`), and runs on the TensorFlow, JAX and
PyTorch backends. Code for one backend only lives in `tf3dstylegan.backend.<backend>`, as Keras keeps its own in
`keras.src.backend.<backend>`: where TensorFlow has a measured faster or leaner way (custom gradients that keep less
for the backward pass, XLA islands for kernels its CPU build lacks), `tensorflow_variant` swaps it in for the
portable function on that backend; the training steps and compiled functions of each backend live there too.
"""
import functools
import importlib

import keras


def name() -> str:
    """'tensorflow', 'jax' or 'torch' (`keras.backend.backend()`)."""
    return keras.backend.backend()


def is_tensorflow() -> bool:
    return name() == "tensorflow"


def tensorflow_variant(variant_name):
    """Decorator: on the TensorFlow backend, calls go to `tf3dstylegan.backend.tensorflow.ops.<variant_name>` (same
    signature and result); elsewhere to the decorated portable function, which stays reachable as `.portable`."""
    def wrap(portable):
        variant = None
        if is_tensorflow():
            variant = getattr(importlib.import_module("tf3dstylegan.backend.tensorflow.ops"), variant_name)

        @functools.wraps(portable)
        def call(*args, **kwargs):
            return (variant or portable)(*args, **kwargs)
        call.portable = portable
        call.variant = variant
        return call
    return wrap


def _functions():
    return importlib.import_module(f"tf3dstylegan.backend.{name()}.functions")


def compiled(fn, models=()):
    """fn(*tensors) compiled the way this backend compiles (tf.function, jax.jit on the variables' current values,
    eager without gradients on PyTorch); `models`: the Keras models whose variables fn reads."""
    return _functions().compiled(fn, models)


def minimizer(loss_fn, variables, optimizer, models=()):
    """step(*args) -> loss: one `optimizer` step on the Keras `variables` for the scalar loss_fn(*args), which may
    read the (constant) variables of `models`. The optimizer must be built on `variables`."""
    return _functions().minimizer(loss_fn, variables, optimizer, models)


def StatelessRandom(seed):  # noqa: N802 (a class on each backend)
    """The backend's stateless random source: `.normal(shape)`, `.uniform(shape, minval, maxval)`, `.child(tag)`,
    from a seed (an int [2] tensor on TensorFlow, a PRNG key on JAX)."""
    return importlib.import_module(f"tf3dstylegan.backend.{name()}.random").StatelessRandom(seed)


def has_accelerator() -> bool:
    """Whether this backend sees a GPU (or another accelerator)."""
    if name() == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU"))
    if name() == "jax":
        import jax
        return any(device.platform != "cpu" for device in jax.devices())
    import torch
    return torch.cuda.is_available()

