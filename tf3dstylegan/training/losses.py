"""Loss terms of 3D-StyleGAN training, as pure functions of network outputs in `keras.ops` (shared by every
backend's training step).

Every function returns one value per example (shape [B]); a training step averages them over the global batch,
so the sums over replicas give the true batch mean.
"""
from keras import ops

VOLUME_AXES = (1, 2, 3, 4)  # X, Y, Z, C of a [B, X, Y, Z, C] volume


def g_nonsaturating(fake_logits):
    """Non-saturating logistic G loss softplus(-D(G(z))): [B, 1] -> [B]."""
    return ops.softplus(-ops.reshape(ops.cast(fake_logits, "float32"), (-1,)))


def d_logistic(real_logits, fake_logits):
    """Logistic D loss softplus(D(fake)) + softplus(-D(real)): [B, 1], [B, 1] -> [B]."""
    real = ops.reshape(ops.cast(real_logits, "float32"), (-1,))
    fake = ops.reshape(ops.cast(fake_logits, "float32"), (-1,))
    return ops.softplus(fake) + ops.softplus(-real)


def gradient_penalty(grads, gamma):
    """R1/R2 penalty (gamma / 2) * |dD/dx|^2 summed over X, Y, Z and C: [B, X, Y, Z, C] -> [B]."""
    return 0.5 * gamma * ops.sum(ops.square(ops.cast(grads, "float32")), axis=VOLUME_AXES)


def path_length_scale(shape):
    """1 / sqrt(X*Y*Z): the path-length probe is N(0, 1) scaled by it, for a volume batch of `shape`."""
    return 1.0 / float(shape[1] * shape[2] * shape[3]) ** 0.5


def path_lengths(ws_grads):
    """|J^T y| per example: sqrt(mean over styles of the sum over w of g^2): [B, num_ws, dlatent_size] -> [B]."""
    grads = ops.cast(ws_grads, "float32")
    return ops.sqrt(ops.mean(ops.sum(ops.square(grads), axis=2), axis=1))


def updated_pl_mean(pl_mean, mean_length, decay):
    """Exponential moving average of the path length: pl_mean + decay * (mean_length - pl_mean)."""
    return pl_mean + decay * (mean_length - pl_mean)


def path_length_penalty(lengths, pl_mean, weight):
    """weight * (|J^T y| - pl_mean)^2: [B] -> [B]."""
    return weight * ops.square(lengths - pl_mean)
