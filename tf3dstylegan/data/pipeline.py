"""tf.data input pipeline over a records folder: float32 [B, X, Y, Z, C] in [-1, 1] (and labels)."""
import re

import numpy as np
import tensorflow as tf

from tf3dstylegan import usage
from tf3dstylegan.data.labels import read_labels
from tf3dstylegan.data.records import dataset_info
from tf3dstylegan.data.sampling import DEFAULT_CACHE_MB, MIRROR_STREAM, derived_seed
from tf3dstylegan.data.volumes import DataError

DEFAULT_SHUFFLE_MB = 2048  # shuffle window; the original used 4096 MB
RECORD_FEATURES = {
    "shape": tf.io.FixedLenFeature([4], tf.int64),
    "data": tf.io.FixedLenFeature([], tf.string),
}


def parse_volume(serialized, shape, source="a record"):
    """One serialized record -> float32 [X, Y, Z, C] in [-1, 1] (shape = [C, X, Y, Z]); a record of
    another shape or payload length fails with a message naming `source` (its file)."""
    features = tf.io.parse_single_example(serialized, RECORD_FEATURES)
    data = tf.io.decode_raw(features["data"], tf.float32, little_endian=True)  # [C*X*Y*Z]
    fits = tf.logical_and(tf.reduce_all(features["shape"] == tf.constant(shape, tf.int64)),
                          tf.size(data) == int(np.prod(shape)))
    check = tf.debugging.Assert(fits, ["bad record in", source, "shape", features["shape"], "values",
                                       tf.size(data), "expected shape", list(shape)], summarize=4)
    with tf.control_dependencies([check]):
        data = tf.identity(data)
    channels, spatial = shape[0], list(shape[1:])
    if channels == 1:
        volume = tf.reshape(data, [*spatial, 1])  # no transpose needed
    else:
        volume = tf.transpose(tf.reshape(data, shape), [1, 2, 3, 0])
    return volume * 2.0 - 1.0  # dynamic range [0, 1] -> [-1, 1]


def bad_record_message(error, path):
    """One line for a tf.errors.OpError met while reading batches of records folder `path` (a record of
    another shape or length names its file; a CRC failure does not), or None for other errors."""
    text = " ".join(str(getattr(error, "message", error)).split())
    found = re.search(r"\[bad record in\] \[(.*?)\] \[shape\] \[(.*?)\] \[values\] \[(\d+)\]", text)
    if found:
        return (f"{found.group(1)}: a record of shape [{found.group(2)}] with {found.group(3)} values does not fit "
                f"the dataset; find it with: {usage.command('dataset')} info {path} --verify")
    if isinstance(error, tf.errors.DataLossError):
        reason = re.search(r"corrupted record at \d+", text)
        return (f"{path}: a record file is corrupt ({reason.group(0) if reason else 'bad CRC'}); find it with: "
                f"{usage.command('dataset')} info {path} --verify")
    return None


def mirror_x(volume, flip):
    """The volume [X, Y, Z, C] flipped along X (the original's axis D0) when flip is true."""
    return tf.cond(flip, lambda: tf.reverse(volume, axis=[0]), lambda: volume)


def _indexed_records(file, shard, num_shards):
    """(record, file, label row) of every record of one shard file: record j of shard s is row j * S + s."""
    return tf.data.TFRecordDataset(file, buffer_size=8 << 20).enumerate().map(
        lambda j, record: (record, file, j * num_shards + shard))


def make_dataset(path, batch_size, *, seed=0, shuffle=True, repeat=True, mirror_augment=False,
                 input_context=None, shuffle_mb=DEFAULT_SHUFFLE_MB, cache_mb=DEFAULT_CACHE_MB,
                 max_volumes=None, with_labels=False, info=None):
    """A tf.data.Dataset of float32 [B, X, Y, Z, C] batches in [-1, 1] from a records folder; with
    with_labels, of (volumes, labels float32 [B, label_size]) pairs, each label the one of its volume.

    batch_size is the global batch; with input_context (tf.distribute.InputContext, as given by
    `strategy.distribute_datasets_from_function`) each input pipeline yields the per-replica batch
    of its own shard of the data. shuffle and mirror_augment are deterministic for a given seed.
    Batches are full (drop_remainder) when repeating. A dataset (shard) of at most cache_mb is
    parsed once and kept in memory. info: the folder's DatasetInfo when the caller has read it
    (records.dataset_info)."""
    info = info or dataset_info(path)
    labels = None
    if with_labels:
        _, labels = read_labels(path)
        if labels is None:
            raise DataError(path, f"has no labels (*.labels); create it with {usage.command('dataset')} "
                            "create-from-images3d --labels TABLE")
        labels = tf.constant(labels, tf.float32)  # [N, L]
    shape = (info.num_channels, *info.img_shape)  # [C, X, Y, Z] as stored
    bytes_per_volume = int(np.prod(shape)) * 4
    num_files = len(info.files)
    files = tf.data.Dataset.from_tensor_slices(([str(f) for f in info.files], tf.range(num_files, dtype=tf.int64)))
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
        lambda f, s: _indexed_records(f, s, num_files), cycle_length=min(num_files, 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if num_pipelines > 1 and not shard_files:
        records = records.shard(num_pipelines, pipeline_id)
    if max_volumes is not None:
        records = records.take(max_volumes)
    if labels is None:
        volumes = records.map(lambda r, f, i: parse_volume(r, shape, f), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
    else:
        volumes = records.map(lambda r, f, i: (parse_volume(r, shape, f), tf.gather(labels, i)),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    num_volumes = -(-info.num_volumes // num_pipelines)  # at most, per input pipeline
    if min(num_volumes, max_volumes or num_volumes) * bytes_per_volume <= cache_mb << 20:
        volumes = volumes.cache()
    if shuffle:
        buffer = max(1, ((shuffle_mb << 20) - 1) // bytes_per_volume + 1)
        volumes = volumes.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        volumes = volumes.repeat()
    if mirror_augment:  # one coin per volume from a seeded stream: reproducible under parallelism
        coins = tf.data.Dataset.random(seed=derived_seed(seed, MIRROR_STREAM, pipeline_id))
        coins = coins.map(lambda r: r % 2 == 0)
        flip = mirror_x if labels is None else lambda pair, coin: (mirror_x(pair[0], coin), pair[1])
        volumes = tf.data.Dataset.zip(volumes, coins).map(
            flip, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = volumes.batch(batch_size, drop_remainder=repeat, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)
