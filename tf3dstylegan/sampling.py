"""Compiled sampling from a Generator, for every part of the package that needs volumes from latents or styles
(generation, metrics, the training loop's previews and diversity probe): the synthesis network runs compiled the way
the backend compiles (tf.function, jax.jit, no-grad PyTorch), so no caller pays for an eager pass.

A compiled synthesis pass is built once per (Generator, noise_mode, slab_size) and kept while the Generator lives:
each build is a new trace (tf.function) or compilation (jax.jit). Weights are read when it runs, so a sampler of
G_ema built at the start of training sees the EMA's current values at every snapshot.
"""
import weakref

import keras
import numpy as np

from tf3dstylegan import backend


def to_numpy(tensor):
    """A backend tensor as a NumPy array."""
    return keras.ops.convert_to_numpy(tensor)


_compiled_passes = weakref.WeakKeyDictionary()  # Generator -> {(noise_mode, slab_size): compiled pass}


def compiled_synthesis(G, noise_mode="const", slab_size=None):
    """A compiled synthesis pass: (ws [b, num_ws, dlatent_size], noise maps [b, x, y, z, 1] per layer or None) ->
    volumes [b, X, Y, Z, C] as NumPy. slab_size: see SynthesisNetwork (less memory, same volumes). The same pass
    is returned for the same G and arguments."""
    passes = _compiled_passes.setdefault(G, {})
    if (noise_mode, slab_size) not in passes:
        generator = weakref.ref(G)  # the pass must not keep G alive through the cache
        run = backend.compiled(lambda ws, noise: generator().synthesis(ws, noise_mode=noise_mode, noise=noise,
                                                                        slab_size=slab_size), models=[G])

        def synthesize_batch(ws, noise=None):
            noise = None if noise is None else [keras.ops.convert_to_tensor(n, "float32") for n in noise]
            return to_numpy(run(keras.ops.convert_to_tensor(ws, "float32"), noise))
        passes[noise_mode, slab_size] = synthesize_batch
    return passes[noise_mode, slab_size]


def sampler(G, psi=1.0, noise_mode="const"):
    """(z [b, latent_size], labels [b, L] or None) -> volumes [b, X, Y, Z, C] in [-1, 1] as NumPy: the mapping,
    truncation and compiled synthesis of a Generator; any other object with a Generator's call interface is called
    as it is."""
    if not isinstance(G, keras.Model):
        return lambda z, labels=None: np.asarray(G(z, truncation_psi=psi, noise_mode=noise_mode,
                                                   **({} if labels is None else {"labels": labels})), np.float32)
    synthesize_batch = compiled_synthesis(G, noise_mode)
    return lambda z, labels=None: synthesize_batch(to_numpy(G.truncate(G.mapping(np.asarray(z, np.float32), labels),
                                                                       psi)))


def synthesize(G, ws, noise_mode="const", noise=None, batch_size=4, slab_size=None):
    """ws [N, num_ws, dlatent_size] (+ optional noise maps [N, x, y, z, 1] per layer) -> volumes [N, X, Y, Z, C]."""
    run = compiled_synthesis(G, noise_mode, slab_size)
    return np.concatenate([run(ws[i:i + batch_size], None if noise is None else [n[i:i + batch_size] for n in noise])
                           for i in range(0, len(ws), batch_size)])
