"""Loss terms of 3D-StyleGAN training, as pure functions of network outputs.

Every function returns one value per example (shape [B]); the training step averages them over the
global batch (`tf.nn.compute_average_loss`), so the sums over replicas give the true batch mean.
"""
import tensorflow as tf

VOLUME_AXES = (1, 2, 3, 4)  # X, Y, Z, C of a [B, X, Y, Z, C] volume


def g_nonsaturating(fake_logits):
    """Non-saturating logistic G loss softplus(-D(G(z))): [B, 1] -> [B]."""
    return tf.nn.softplus(-tf.reshape(tf.cast(fake_logits, tf.float32), [-1]))


def d_logistic(real_logits, fake_logits):
    """Logistic D loss softplus(D(fake)) + softplus(-D(real)): [B, 1], [B, 1] -> [B]."""
    real = tf.reshape(tf.cast(real_logits, tf.float32), [-1])
    fake = tf.reshape(tf.cast(fake_logits, tf.float32), [-1])
    return tf.nn.softplus(fake) + tf.nn.softplus(-real)


def gradient_penalty(grads, gamma):
    """R1/R2 penalty (gamma / 2) * |dD/dx|^2 summed over X, Y, Z and C: [B, X, Y, Z, C] -> [B]."""
    return 0.5 * gamma * tf.reduce_sum(tf.square(tf.cast(grads, tf.float32)), axis=VOLUME_AXES)


def path_length_noise(shape, seed):
    """Random image-space direction y ~ N(0, 1) / sqrt(X*Y*Z) for the path-length probe: shape [B, X, Y, Z, C]."""
    num_voxels = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.random.stateless_normal(shape, seed=seed) / tf.sqrt(num_voxels)


def path_lengths(ws_grads):
    """|J^T y| per example: sqrt(mean over styles of the sum over w of g^2): [B, num_ws, dlatent_size] -> [B]."""
    grads = tf.cast(ws_grads, tf.float32)
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=2), axis=1))


def updated_pl_mean(pl_mean, mean_length, decay):
    """Exponential moving average of the path length: pl_mean + decay * (mean_length - pl_mean)."""
    return pl_mean + decay * (mean_length - pl_mean)


def path_length_penalty(lengths, pl_mean, weight):
    """weight * (|J^T y| - pl_mean)^2: [B] -> [B]."""
    return weight * tf.square(lengths - pl_mean)
