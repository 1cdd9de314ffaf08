"""Minibatch standard deviation with the original's grouping."""
import tensorflow as tf


def minibatch_stddev(x, group_size=4, num_features=1):
    """Append `num_features` channels holding each group's mean standard deviation.

    x: [N, X, Y, Z, C] -> [N, X, Y, Z, C + num_features]. G = min(group_size, N) and N must be a
    multiple of G; sample i belongs to group i mod (N / G), as in the original.
    """
    n = tf.shape(x)[0]
    group = tf.minimum(group_size, n)
    tf.debugging.assert_equal(n % group, 0, message="minibatch stddev: batch must be a multiple of the group size")
    _, sx, sy, sz, channels = x.shape
    dims = tf.shape(x)
    y = tf.reshape(x, [group, -1, dims[1], dims[2], dims[3], num_features, channels // num_features])
    y = tf.cast(y, tf.float32)                                  # [G, M, X, Y, Z, F, c]
    y -= tf.reduce_mean(y, axis=0, keepdims=True)
    y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + 1e-8)   # [M, X, Y, Z, F, c]
    y = tf.reduce_mean(y, axis=[1, 2, 3, 5])                    # [M, F]
    y = tf.cast(tf.reshape(y, [-1, 1, 1, 1, num_features]), x.dtype)
    y = tf.tile(y, [group, dims[1], dims[2], dims[3], 1])       # [N, X, Y, Z, F]
    return tf.concat([x, y], axis=-1)
