"""The shared shape of the metric networks' feature extractors: a Keras model run batch by batch."""
import numpy as np
import tensorflow as tf


def weight_dict(weights):
    """{name: array} from a dict or a `.npz` path."""
    if isinstance(weights, (str, bytes)) or hasattr(weights, "__fspath__"):
        with np.load(weights) as data:
            return dict(data)
    return weights


class BatchedModel:
    """model(preprocess(x)) in inference mode on batches of `batch_size`, as one compiled function;
    `features(x)` -> float64 [N, feature_dim] (an empty [0, feature_dim] for no input)."""

    def __init__(self, model, batch_size, preprocess=None):
        self.model, self.batch_size = model, batch_size
        self.feature_dim = model.output_shape[-1]
        prepare = preprocess or (lambda x: x)
        self._forward = tf.function(lambda x: self.model(prepare(x), training=False), reduce_retracing=True)

    def features(self, x):
        x = np.asarray(x, np.float32)
        out = [self._forward(x[i:i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out, 0).astype(np.float64) if out else np.zeros((0, self.feature_dim))
