"""Stateless random draws on TensorFlow: a seed is an int [2] tensor, draw k of a source uses fold_in(seed, k)."""
import tensorflow as tf


class StatelessRandom:
    """normal/uniform like keras.random, from stateless ops: call k (1, 2, ...) uses fold_in(seed, k); `child(tag)`
    is an independent source from fold_in(seed, tag)."""

    def __init__(self, seed):
        self.seed = tf.reshape(tf.cast(seed, tf.int64), [2])
        self.calls = 0

    def next_seed(self):
        self.calls += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.calls)

    def child(self, tag):
        return StatelessRandom(tf.random.experimental.stateless_fold_in(self.seed, tag))

    def normal(self, shape, mean=0.0, stddev=1.0, dtype="float32"):
        return tf.random.stateless_normal(shape, self.next_seed(), mean, stddev, dtype)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype="float32"):
        return tf.random.stateless_uniform(shape, self.next_seed(), minval, maxval, dtype)
