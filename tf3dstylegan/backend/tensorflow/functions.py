"""Compiled inference and optimisation steps on TensorFlow (tf.function, GradientTape)."""
import tensorflow as tf


def compiled(fn, models=()):
    """fn(*tensors) as a tf.function; Keras variables are read when it runs."""
    return tf.function(fn, reduce_retracing=True, autograph=False)


def minimizer(loss_fn, variables, optimizer, models=()):
    """step(*args) -> loss: one optimizer step on `variables` (Keras variables) for loss_fn(*args)."""
    @tf.function(autograph=False)
    def step(*args):
        with tf.GradientTape() as tape:
            loss = loss_fn(*args)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss
    return step
