"""tf.data input pipeline over a records folder: float32 [B, X, Y, Z, C] in [-1, 1]."""
import numpy as np
import tensorflow as tf

from tf3dstylegan.data.records import RECORD_FEATURES, dataset_info

DEFAULT_SHUFFLE_MB = 2048  # shuffle window; the original used 4096 MB
DEFAULT_CACHE_MB = 1024  # keep smaller datasets in memory after parsing


def parse_volume(serialized, shape):
    """One serialized record -> float32 [X, Y, Z, C] in [-1, 1] (shape = [C, X, Y, Z])."""
    features = tf.io.parse_single_example(serialized, RECORD_FEATURES)
    data = tf.io.decode_raw(features["data"], tf.float32, little_endian=True)  # [C*X*Y*Z]
    channels, spatial = shape[0], list(shape[1:])
    if channels == 1:
        volume = tf.reshape(data, [*spatial, 1])  # no transpose needed
    else:
        volume = tf.transpose(tf.reshape(data, shape), [1, 2, 3, 0])
    return volume * 2.0 - 1.0  # dynamic range [0, 1] -> [-1, 1]


def mirror_x(volume, flip):
    """The volume [X, Y, Z, C] flipped along X (the original's axis D0) when flip is true."""
    return tf.cond(flip, lambda: tf.reverse(volume, axis=[0]), lambda: volume)


def make_dataset(path, batch_size, *, seed=0, shuffle=True, repeat=True, mirror_augment=False,
                 input_context=None, shuffle_mb=DEFAULT_SHUFFLE_MB, cache_mb=DEFAULT_CACHE_MB,
                 max_volumes=None):
    """A tf.data.Dataset of float32 [B, X, Y, Z, C] batches in [-1, 1] from a records folder.

    batch_size is the global batch; with input_context (tf.distribute.InputContext, as given by
    `strategy.distribute_datasets_from_function`) each input pipeline yields the per-replica batch
    of its own shard of the data. shuffle and mirror_augment are deterministic for a given seed.
    Batches are full (drop_remainder) when repeating. A dataset (shard) of at most cache_mb is
    parsed once and kept in memory."""
    info = dataset_info(path)
    shape = (info.num_channels, *info.img_shape)  # [C, X, Y, Z] as stored
    bytes_per_volume = int(np.prod(shape)) * 4
    num_files = len(info.files)
    files = tf.data.Dataset.from_tensor_slices([str(f) for f in info.files])
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
    volumes = records.map(lambda r: parse_volume(r, shape), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    num_volumes = -(-info.num_volumes // num_pipelines)  # at most, per input pipeline
    if min(num_volumes, max_volumes or num_volumes) * bytes_per_volume <= cache_mb << 20:
        volumes = volumes.cache()
    if shuffle:
        buffer = max(1, ((shuffle_mb << 20) - 1) // bytes_per_volume + 1)
        volumes = volumes.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        volumes = volumes.repeat()
    if mirror_augment:  # one coin per volume from a seeded stream: reproducible under parallelism
        coins = tf.data.Dataset.random(seed=seed + 1 + pipeline_id).map(lambda r: r % 2 == 0)
        volumes = tf.data.Dataset.zip(volumes, coins).map(
            mirror_x, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = volumes.batch(batch_size, drop_remainder=repeat, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)
