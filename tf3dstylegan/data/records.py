"""The original's TFRecord format (spec §6.1), its writer and the folder reader.

One record per volume: a tf.train.Example with `shape` = int64 [C, X, Y, Z] and `data` = the raw
little-endian float32 C-order bytes in [0, 1]. Files are `<folder name>-rNN.tfrecords` with
NN = log2(4 * X / base_size[0]); sharded datasets add `-SSSofNNN` before the suffix.
"""
import dataclasses
import os
import struct
from pathlib import Path
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from tf3dstylegan.config import resolution_log2_for_shape
from tf3dstylegan.data.volumes import DataError, iter_loaded_volumes, list_volume_files

RECORD_FEATURES = {
    "shape": tf.io.FixedLenFeature([4], tf.int64),
    "data": tf.io.FixedLenFeature([], tf.string),
}


def record_file_name(name, resolution_log2, shard=0, num_shards=1) -> str:
    """`<name>-rNN.tfrecords`, or `<name>-rNN-SSSofNNN.tfrecords` for one of several shards."""
    if num_shards == 1:
        return f"{name}-r{resolution_log2:02d}.tfrecords"
    return f"{name}-r{resolution_log2:02d}-{shard:03d}of{num_shards:03d}.tfrecords"


def serialize_volume(volume) -> bytes:
    """A tf.train.Example of a [C, X, Y, Z] volume, stored as float32 clipped to [0, 1]."""
    volume = np.clip(np.asarray(volume), 0.0, 1.0).astype("<f4")
    example = tf.train.Example(features=tf.train.Features(feature={
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(volume.shape))),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[volume.tobytes()])),
    }))
    return example.SerializeToString()


def parse_volume_np(record) -> np.ndarray:
    """[C, X, Y, Z] float32 from one serialized record, as the original's parse_tfrecord_np."""
    example = tf.train.Example.FromString(record)
    shape = list(example.features.feature["shape"].int64_list.value)
    data = example.features.feature["data"].bytes_list.value[0]
    return np.frombuffer(data, "<f4").reshape(shape)


def half_resolution(volume) -> np.ndarray:
    """2x2x2 block mean of [C, X, Y, Z] (the original's next level of detail)."""
    c, x, y, z = volume.shape
    return volume.reshape(c, x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(2, 4, 6), dtype=np.float32)


class RecordWriter:
    """Writes volumes round-robin into shard files, each under `<final>.tmp` until close().

    Files are named after `name` (default: the folder's name).
    With lods=True it also writes every lower level of detail down to base_size, like the
    original (which reads them but trains on the full resolution only). An exception inside
    `with` removes the temporary files, so no partial file ever has a final name."""

    def __init__(self, outdir, resolution_log2, num_shards=1, lods=False, name=None):
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        levels = range(resolution_log2, 1, -1) if lods else [resolution_log2]
        name = name or self.outdir.name
        self.paths = [[self.outdir / record_file_name(name, r, s, num_shards) for s in range(num_shards)]
                      for r in levels]
        self._writers = [[tf.io.TFRecordWriter(str(self._tmp(p))) for p in row] for row in self.paths]
        self.num_written = 0

    @staticmethod
    def _tmp(path):
        return path.with_name(path.name + ".tmp")

    def write(self, volume):
        """Append one [X, Y, Z] or [X, Y, Z, C] volume (values outside [0, 1] are clipped)."""
        volume = np.asarray(volume, np.float32)
        level = np.moveaxis(volume[..., None] if volume.ndim == 3 else volume, -1, 0)  # [C, X, Y, Z]
        shard = self.num_written % len(self._writers[0])
        for i, row in enumerate(self._writers):
            if i:
                level = half_resolution(level)  # from the unclipped previous level, as the original
            row[shard].write(serialize_volume(level))
        self.num_written += 1

    def close(self) -> List[Path]:
        """Finish and give every file its final name; returns the full-resolution files."""
        for row_writers, row_paths in zip(self._writers, self.paths):
            for writer, path in zip(row_writers, row_paths):
                writer.close()
                os.replace(self._tmp(path), path)
        return list(self.paths[0])

    def abort(self):
        """Close and delete every temporary file."""
        for row_writers, row_paths in zip(self._writers, self.paths):
            for writer, path in zip(row_writers, row_paths):
                writer.close()
                self._tmp(path).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _record_spans(path):
    """Yield (offset, length) of every record's payload, reading only the 12-byte headers."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(12)
            if len(header) < 12:
                raise DataError(path, f"truncated record file (partial header at byte {offset})")
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + 12 + length + 4
            if end > size:
                raise DataError(path, f"truncated record file (record at byte {offset} ends past the end)")
            yield offset + 12, length
            offset = end


def count_records(path) -> int:
    """Number of records in a TFRecord file; DataError if the file is truncated."""
    return sum(1 for _ in _record_spans(path))


def first_record_shape(path):
    """[C, X, Y, Z] of the first record, or None for an empty file."""
    for offset, length in _record_spans(path):
        with open(path, "rb") as f:
            f.seek(offset)
            try:
                example = tf.train.Example.FromString(f.read(length))
                shape = tuple(int(s) for s in example.features.feature["shape"].int64_list.value)
            except Exception as err:  # pylint: disable=broad-except; protobuf DecodeError
                raise DataError(path, f"not a tf.train.Example record ({err})") from None
        if len(shape) != 4:
            raise DataError(path, f"record 'shape' must hold 4 values [C, X, Y, Z], got {shape}")
        return shape
    return None


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a records folder holds at full resolution."""

    path: Path
    files: Tuple[Path, ...]
    num_channels: int
    img_shape: Tuple[int, int, int]  # (X, Y, Z)
    num_volumes: int


def full_resolution_files(path):
    """(files, [C, X, Y, Z]) of the largest volumes in a records folder (all shards; the
    lower levels of detail of the original's multi-LOD folders are ignored)."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.glob("*.tfrecords"))
    else:
        raise DataError(path, "no such records folder or file")
    shapes = {f: first_record_shape(f) for f in files}
    shapes = {f: s for f, s in shapes.items() if s is not None}
    if not shapes:
        raise DataError(path, "no records (expected <name>-rNN.tfrecords files)")
    largest = max(shapes.values(), key=np.prod)
    return [f for f, s in shapes.items() if s == largest], largest


def dataset_info(path) -> DatasetInfo:
    """Shape, channel count, files and volume count of a records folder."""
    files, shape = full_resolution_files(path)
    return DatasetInfo(Path(path), tuple(files), shape[0], tuple(shape[1:]),
                       sum(count_records(f) for f in files))


def read_volumes(path):
    """Yield every full-resolution volume of a records folder as float32 [X, Y, Z, C] in [0, 1]."""
    files, _ = full_resolution_files(path)
    for record in tf.data.TFRecordDataset([str(f) for f in files]).as_numpy_iterator():
        yield np.moveaxis(parse_volume_np(record), 0, -1)


def _check_outdir(outdir):
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise DataError(outdir, "exists and is not a folder")
    if outdir.is_dir() and any(outdir.glob("*.tfrecords")):
        raise DataError(outdir, "already holds .tfrecords files; remove them or choose another folder")


def create_from_images3d(outdir, indir, *, base_size=(5, 6, 7), voxel_size=None, img_shape=None,
                         normalize="none", shards=1, workers=1, skip_bad=False, shuffle=True,
                         lods=False, progress=None) -> dict:
    """Convert a folder of .nii/.nii.gz/.npz volumes into a records folder (the original's
    `create_from_images3d`, plus resampling, normalisation, sharding and bad-file handling).

    shuffle uses the original's order (RandomState(123)); progress(done, total) is called per file.
    Returns a summary dict; raises DataError (one line naming the file) on the first bad file
    unless skip_bad, in which case bad files are listed in summary["skipped"]."""
    if (voxel_size is None) != (img_shape is None):
        raise DataError("--voxel-size/--shape", "resampling needs both a voxel size and a shape")
    if img_shape is not None:
        img_shape = tuple(int(s) for s in img_shape)
        try:
            resolution_log2_for_shape(img_shape, base_size)
        except ValueError as err:
            raise DataError("--shape", str(err)) from None
    if shards < 1:
        raise DataError("--shards", f"must be >= 1, got {shards}")
    paths = list_volume_files(indir)
    order = np.arange(len(paths))
    if shuffle:
        np.random.RandomState(123).shuffle(order)
    paths = [paths[i] for i in order]
    _check_outdir(outdir)
    shards = min(shards, len(paths))

    writer, skipped, shape = None, [], None
    written_range, raw_range, num_clipped = [np.inf, -np.inf], [np.inf, -np.inf], 0
    loaded = iter_loaded_volumes(paths, workers, base_size=base_size, img_shape=img_shape,
                                 voxel_size=voxel_size, normalize=normalize)
    try:
        for done, (path, volume, raw, problem) in enumerate(loaded, 1):
            if problem is None and shape is not None and volume.shape != shape:
                problem = (f"shape {volume.shape} differs from the first volume's {shape} "
                           "(resample with --voxel-size and --shape)")
            if problem is not None:
                if not skip_bad:
                    raise DataError(path, problem)
                skipped.append(str(DataError(path, problem)))
            else:
                if writer is None:
                    shape = volume.shape
                    writer = RecordWriter(outdir, resolution_log2_for_shape(shape, base_size), shards, lods)
                writer.write(volume)
                written_range = [min(written_range[0], volume.min()), max(written_range[1], volume.max())]
                raw_range = [min(raw_range[0], raw[0]), max(raw_range[1], raw[1])]
                num_clipped += normalize == "none" and (raw[0] < 0 or raw[1] > 1)
            if progress is not None:
                progress(done, len(paths))
    except BaseException:
        if writer is not None:
            writer.abort()
        loaded.close()
        raise
    if writer is None:
        raise DataError(indir, f"no usable volumes ({len(skipped)} bad files skipped)")
    files = writer.close()
    return {"outdir": str(outdir), "files": [str(f) for f in files], "num_volumes": writer.num_written,
            "img_shape": list(shape), "value_range": [float(v) for v in written_range],
            "input_range": [float(v) for v in raw_range], "num_clipped": int(num_clipped),
            "normalize": normalize, "skipped": skipped}
