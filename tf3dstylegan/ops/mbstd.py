"""Minibatch standard deviation with the original's grouping."""
from keras import ops


def minibatch_stddev(x, group_size=4, num_features=1):
    """Append `num_features` channels holding each group's mean standard deviation.

    x: [N, X, Y, Z, C] -> [N, X, Y, Z, C + num_features]. G = min(group_size, N) and N must be a
    multiple of G; sample i belongs to group i mod (N / G), as in the original.
    """
    n, sx, sy, sz, channels = ops.shape(x)
    if isinstance(n, int):
        group = min(group_size, n)
        if n % group:
            raise ValueError(f"minibatch stddev: batch {n} must be a multiple of the group size {group}")
    else:  # a batch size known only when the graph runs (TensorFlow)
        group = ops.minimum(group_size, n)
    y = ops.reshape(x, (group, -1, sx, sy, sz, num_features, channels // num_features))
    y = ops.cast(y, "float32")                                             # [G, M, X, Y, Z, F, c]
    y = y - ops.mean(y, axis=0, keepdims=True)
    y = ops.sqrt(ops.mean(ops.square(y), axis=0) + 1e-8)                  # [M, X, Y, Z, F, c]
    y = ops.mean(y, axis=(1, 2, 3, 5))                                     # [M, F]
    y = ops.cast(ops.reshape(y, (-1, 1, 1, 1, num_features)), x.dtype)
    y = ops.tile(y, (group, sx, sy, sz, 1))                                # [N, X, Y, Z, F]
    return ops.concatenate([x, y], axis=-1)
