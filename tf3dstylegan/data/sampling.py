"""What both input pipelines (data.pipeline's tf.data, data.batches' NumPy) share about sampling a records folder:
the seeds of their random streams and the size up to which a dataset is kept in memory."""
import numpy as np

DEFAULT_CACHE_MB = 1024  # keep smaller datasets in memory after parsing
MIRROR_STREAM = 1  # derived_seed key of the mirror coins
SHUFFLE_STREAM = 2  # derived_seed key of the NumPy pipeline's epoch order (tf.data shuffles with the seed itself)


def derived_seed(*keys) -> int:
    """A seed from integer keys (run seed, start step, pipeline): numpy's SeedSequence hash, so every key tuple
    gets an independent stream (sums such as seed + step collide: 0 + 1 == 1 + 0)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
