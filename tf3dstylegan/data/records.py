"""The original 3D-StyleGAN's TFRecord format, its writer and the folder reader.

One record per volume: a tf.train.Example with `shape` = int64 [C, X, Y, Z] and `data` = the raw
little-endian float32 C-order bytes in [0, 1]. Files are `<folder name>-rNN.tfrecords` with
NN = log2(4 * X / base_size[0]); sharded datasets add `-SSSofNNN` before the suffix.
"""
import contextlib
import dataclasses
import math
import os
import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np

from tf3dstylegan.data.example import decode_example, encode_example, feature_values
from tf3dstylegan.data.labels import read_labels
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.io.protobuf import WireError
from tf3dstylegan.io.tfrecord import RecordError, iter_records, record_spans, write_record


def record_file_name(name, resolution_log2, shard=0, num_shards=1) -> str:
    """`<name>-rNN.tfrecords`, or `<name>-rNN-SSSofNNN.tfrecords` for one of several shards."""
    if num_shards == 1:
        return f"{name}-r{resolution_log2:02d}.tfrecords"
    return f"{name}-r{resolution_log2:02d}-{shard:03d}of{num_shards:03d}.tfrecords"


def serialize_volume(volume) -> bytes:
    """A tf.train.Example of a [C, X, Y, Z] volume, stored as float32 clipped to [0, 1]."""
    volume = np.asarray(volume, "<f4")  # no copy of a float32 volume already in [0, 1]: large ones stay in memory
    if volume.size and (volume.min() < 0.0 or volume.max() > 1.0):
        volume = np.clip(volume, 0.0, 1.0)
    return encode_example({"shape": ("int64", volume.shape), "data": ("bytes", [volume.tobytes()])})


def parse_volume_np(record) -> np.ndarray:
    """[C, X, Y, Z] float32 from one serialized record, as the original's parse_tfrecord_np."""
    features = decode_example(record)
    shape = list(feature_values(features, "shape", "int64"))
    data = feature_values(features, "data", "bytes")[0]
    return np.frombuffer(data, "<f4").reshape(shape)


def half_resolution(volume) -> np.ndarray:
    """2x2x2 block mean of [C, X, Y, Z] (the original's next level of detail)."""
    c, x, y, z = volume.shape
    return volume.reshape(c, x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(2, 4, 6), dtype=np.float32)


class RecordWriter:
    """Writes volumes round-robin into shard files, each under an exclusively created temporary
    name (`.<final>.XXXX.tmp`, never a planted file or symlink) until close().

    Files are named after `name` (default: the folder's name).
    With lods=True it also writes every lower level of detail down to base_size, like the
    original (which reads them but trains on the full resolution only). An exception inside
    `with` removes the temporary files (and the folder if it made it and it is empty), so no partial
    file ever has a final name. Failed writes (full disk, read-only folder) raise DataError naming
    the file."""

    def __init__(self, outdir, resolution_log2, num_shards=1, lods=False, name=None):
        self.outdir = Path(outdir)
        levels = range(resolution_log2, 1, -1) if lods else [resolution_log2]
        name = name or self.outdir.name
        self.paths = [[self.outdir / record_file_name(name, r, s, num_shards) for s in range(num_shards)]
                      for r in levels]
        self._tmps, self._writers = [], []
        self._created_outdir = not self.outdir.exists()
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            for row in self.paths:
                self._tmps.append([self._exclusive_tmp(p) for p in row])
                self._writers.append([open(t, "wb") for t in self._tmps[-1]])  # pylint: disable=consider-using-with
        except OSError as err:
            self.abort()
            raise _write_error(self.outdir, err) from None
        self.num_written = 0

    @staticmethod
    def _exclusive_tmp(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # the permissions of a plainly created file, not mkstemp's 0600
        finally:
            os.close(fd)
        return Path(tmp)

    def write(self, volume):
        """Append one [X, Y, Z] or [X, Y, Z, C] volume (values outside [0, 1] are clipped; NaN or Inf
        is refused)."""
        volume = np.asarray(volume, np.float32)
        if not np.isfinite(volume).all():
            raise ValueError(f"{self.outdir}: refusing to write a volume with NaN or Inf values")
        level = np.moveaxis(volume[..., None] if volume.ndim == 3 else volume, -1, 0)  # [C, X, Y, Z]
        shard = self.num_written % len(self._writers[0])
        for i, row in enumerate(self._writers):
            if i:
                level = half_resolution(level)  # from the unclipped previous level, as the original
            try:
                write_record(row[shard], serialize_volume(level))
            except OSError as err:
                raise _write_error(self.paths[i][shard], err) from None
        self.num_written += 1

    def close(self) -> List[Path]:
        """Finish and give every file its final name; returns the full-resolution files."""
        for writers, tmps, paths in zip(self._writers, self._tmps, self.paths):
            for writer, tmp, path in zip(writers, tmps, paths):
                try:
                    writer.close()
                    os.replace(tmp, path)
                except OSError as err:
                    self.abort()
                    raise _write_error(path, err) from None
        return list(self.paths[0])

    def abort(self):
        """Close and delete every temporary file."""
        for writers, tmps in zip(self._writers, self._tmps):
            for writer in writers:
                try:
                    writer.close()
                except OSError:
                    pass  # a full disk: the file goes anyway
        for tmp in (t for row in self._tmps for t in row):
            tmp.unlink(missing_ok=True)
        if self._created_outdir:
            with contextlib.suppress(OSError):  # only if empty: files of others stay
                self.outdir.rmdir()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _write_error(path, err) -> DataError:
    """A one-line DataError for a failed write (an OSError) naming `path`."""
    return DataError(path, f"cannot write: {err.strerror or err}")


def _record_spans(path):
    """Yield (offset, length) of every record's payload, reading only the 12-byte headers (their CRCs checked)."""
    try:
        yield from record_spans(path)
    except RecordError as err:
        raise DataError(err.path, err.problem) from None


def count_records(path) -> int:
    """Number of records in a TFRecord file; DataError if the file is truncated."""
    return sum(1 for _ in _record_spans(path))


def first_record(path):
    """([C, X, Y, Z], float32 values) of the first record of a file, or None for an empty file; DataError when
    the record is not an Example of a positive 4-value shape whose payload holds exactly that many float32
    values (checked with exact integers before anything of that size exists)."""
    for offset, length in _record_spans(path):
        with open(path, "rb") as f:
            f.seek(offset)
            try:
                features = decode_example(f.read(length))
            except WireError as err:
                raise DataError(path, f"not a tf.train.Example record ({err})") from None
        shape = tuple(int(s) for s in feature_values(features, "shape", "int64"))
        data = feature_values(features, "data", "bytes")
        if len(shape) != 4:
            floats = feature_values(features, "shape", "float")
            kind = "a float list" if len(floats) else f"{len(shape)} values"
            raise DataError(path, f"record 'shape' must hold 4 int64 values [C, X, Y, Z], got {kind} {shape}")
        if min(shape) < 1:
            raise DataError(path, f"record 0 has shape {list(shape)}: every size must be >= 1")
        payload = sum(len(d) for d in data)
        if len(data) != 1 or payload != 4 * math.prod(shape):
            raise DataError(path, f"record 0 claims shape {list(shape)} ({math.prod(shape):,} float32 values) but "
                                  f"its payload holds {payload:,} bytes")
        return shape, np.frombuffer(data[0], "<f4")
    return None


def first_record_shape(path):
    """[C, X, Y, Z] of the first record, or None for an empty file (checked as first_record)."""
    found = first_record(path)
    return None if found is None else found[0]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a records folder holds at full resolution."""

    path: Path
    files: Tuple[Path, ...]
    num_channels: int
    img_shape: Tuple[int, int, int]  # (X, Y, Z)
    num_volumes: int
    label_size: int = 0  # 0: no labels file


def full_resolution_files(path):
    """(files, [C, X, Y, Z]) of the largest volumes in a records folder (all shards; the
    lower levels of detail of the original's multi-LOD folders are ignored)."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.glob("*.tfrecords") if not p.name.startswith("."))
    elif path.exists():
        raise DataError(path, "not a regular file or folder (a FIFO or device?): expected a records folder")
    else:
        raise DataError(path, "no such records folder or file")
    for file in files:
        if not file.is_file():  # opening a FIFO would block
            raise DataError(file, "not a regular file (a FIFO, device or folder): expected TFRecords")
    shapes = {f: first_record_shape(f) for f in files}
    shapes = {f: s for f, s in shapes.items() if s is not None}
    if not shapes:
        raise DataError(path, "no records (expected <name>-rNN.tfrecords files)")
    largest = max(shapes.values(), key=np.prod)
    return [f for f, s in shapes.items() if s == largest], largest


def dataset_info(path) -> DatasetInfo:
    """Shape, channel count, files, volume count and label size of a records folder; DataError when a
    labels file does not hold one row per volume."""
    files, shape = full_resolution_files(path)
    num_volumes = sum(count_records(f) for f in files)
    _, labels = read_labels(path)
    if labels is not None and len(labels) != num_volumes:
        raise DataError(path, f"its labels file has {len(labels)} rows but the records hold {num_volumes} volumes")
    return DatasetInfo(Path(path), tuple(files), shape[0], tuple(shape[1:]), num_volumes,
                       0 if labels is None else labels.shape[1])


def read_volumes(path):
    """Yield every full-resolution volume of a records folder as float32 [X, Y, Z, C] in [0, 1]."""
    files, _ = full_resolution_files(path)
    for file in files:
        try:
            for record in iter_records(file):
                yield np.moveaxis(parse_volume_np(record), 0, -1)
        except RecordError as err:
            raise DataError(err.path, err.problem) from None
