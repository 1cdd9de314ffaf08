"""Stateless random draws on JAX: a seed is a PRNG key, draw k of a source uses fold_in(key, k)."""
import jax


class StatelessRandom:
    """normal/uniform like keras.random, from a key: call k (1, 2, ...) uses fold_in(key, k); `child(tag)` is an
    independent source from fold_in(key, tag)."""

    def __init__(self, seed):
        self.seed = seed
        self.calls = 0

    def next_seed(self):
        self.calls += 1
        return jax.random.fold_in(self.seed, self.calls)

    def child(self, tag):
        return StatelessRandom(jax.random.fold_in(self.seed, tag))

    def normal(self, shape, mean=0.0, stddev=1.0, dtype="float32"):
        return jax.random.normal(self.next_seed(), tuple(shape), dtype) * stddev + mean

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype="float32"):
        return jax.random.uniform(self.next_seed(), tuple(shape), dtype, minval, maxval)
