"""tf.data input pipeline over a records folder: float32 [B, X, Y, Z, C] in [-1, 1]."""
import numpy as np
import tensorflow as tf

from tf3dstylegan.data.records import RECORD_FEATURES, full_resolution_files

DEFAULT_SHUFFLE_MB = 2048  # shuffle window; the original used 4096 MB


def parse_batch(serialized, shape):
    """[B] serialized records -> float32 [B, X, Y, Z, C] in [-1, 1] (shape = [C, X, Y, Z])."""
    features = tf.io.parse_example(serialized, RECORD_FEATURES)
    data = tf.io.decode_raw(features["data"], tf.float32, little_endian=True)  # [B, C*X*Y*Z]
    volumes = tf.reshape(data, [-1, *shape])  # [B, C, X, Y, Z]
    volumes.set_shape([serialized.shape[0], *shape])
    volumes = tf.transpose(volumes, [0, 2, 3, 4, 1])  # [B, X, Y, Z, C]
    return volumes * 2.0 - 1.0  # dynamic range [0, 1] -> [-1, 1]


def mirror_x(volumes, flip):
    """Flip each volume of [B, X, Y, Z, C] along X (the original's axis D0) where flip [B] is true."""
    return tf.where(flip[:, None, None, None, None], tf.reverse(volumes, axis=[1]), volumes)


def make_dataset(path, batch_size, *, seed=0, shuffle=True, repeat=True, mirror_augment=False,
                 input_context=None, shuffle_mb=DEFAULT_SHUFFLE_MB, max_volumes=None):
    """A tf.data.Dataset of float32 [B, X, Y, Z, C] batches in [-1, 1] from a records folder.

    batch_size is the global batch; with input_context (tf.distribute.InputContext, as given by
    `strategy.distribute_datasets_from_function`) each input pipeline yields the per-replica batch
    of its own shard of the data. shuffle and mirror_augment are deterministic for a given seed.
    Batches are full (drop_remainder) when repeating."""
    files, shape = full_resolution_files(path)
    bytes_per_volume = int(np.prod(shape)) * 4
    files = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    num_files = int(files.cardinality())
    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    shard_files = num_pipelines > 1 and num_files >= num_pipelines
    if shard_files:
        files = files.shard(num_pipelines, pipeline_id)
    if shuffle:
        files = files.shuffle(num_files, seed=seed)
    records = files.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20), cycle_length=min(num_files, 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if num_pipelines > 1 and not shard_files:
        records = records.shard(num_pipelines, pipeline_id)
    if max_volumes is not None:
        records = records.take(max_volumes)
    if shuffle:
        buffer = max(1, ((shuffle_mb << 20) - 1) // bytes_per_volume + 1)
        records = records.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    # One coin per volume from a seeded stream: reproducible under parallel parsing.
    coins = tf.data.Dataset.random(seed=seed + 1 + pipeline_id).map(lambda r: r % 2 == 0)
    batches = tf.data.Dataset.zip(records, coins).batch(batch_size, drop_remainder=repeat)

    def to_volumes(serialized, flip):
        volumes = parse_batch(serialized, shape)
        return mirror_x(volumes, flip) if mirror_augment else volumes

    batches = batches.map(to_volumes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)
