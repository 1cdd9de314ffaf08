"""Verify a records folder before training: every record's CRCs, plus a sample of parsed payloads."""
import math
from pathlib import Path

import numpy as np

from tf3dstylegan.data.example import decode_example, feature_values
from tf3dstylegan.data.records import count_records, dataset_info, first_record_shape
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.io.protobuf import WireError
from tf3dstylegan.io.tfrecord import RecordError, iter_records

DEFAULT_SAMPLE = 64  # payloads parsed per file (evenly spaced, first and last included)


def check_payload(path, index, record, shape):
    """DataError naming file and record unless `record` is an Example of float32 [C, X, Y, Z] = shape
    with a data length that fits the shape and finite values in [0, 1]."""
    where = f"{path}: record {index}"
    try:
        features = decode_example(record)
    except WireError as err:
        raise DataError(where, f"not a tf.train.Example ({err})") from None
    stored = tuple(feature_values(features, "shape", "int64"))
    data = feature_values(features, "data", "bytes")
    if stored != tuple(shape):
        raise DataError(where, f"shape {list(stored)} differs from the file's first record {list(shape)}")
    if len(data) != 1 or len(data[0]) != 4 * math.prod(shape):
        length = sum(len(d) for d in data)
        raise DataError(where, f"payload of {length} bytes does not fit shape {list(shape)} "
                               f"({4 * math.prod(shape):,} bytes of float32)")
    values = np.frombuffer(data[0], "<f4")
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise DataError(where, "holds values that are NaN, Inf or outside [0, 1]")


def verify_file(path, sample=DEFAULT_SAMPLE) -> int:
    """Stream every record of one .tfrecords file (both CRCs of each checked) and parse
    `sample` of them; returns the record count, DataError naming the file and record if corrupt."""
    total = count_records(path)  # also catches a truncated file from the headers alone
    if total == 0:
        return 0
    shape = first_record_shape(path)
    chosen = set(np.linspace(0, total - 1, min(total, max(0, sample))).round().astype(int).tolist())
    index = 0
    try:
        for record in iter_records(path):
            if index in chosen:
                check_payload(path, index, record, shape)
            index += 1
    except RecordError as err:  # names the record: '<file>: record N: corrupt (...)'
        raise DataError(err.path, err.problem) from None
    return index


def verify_records(path, sample=DEFAULT_SAMPLE, progress=None) -> dict:
    """Verify every .tfrecords file of a records folder (all levels of detail) and its labels.
    progress(done, total) is called per file. Returns {"files": N, "records": N, "label_size": L}."""
    info = dataset_info(path)  # shapes, counts and labels against the records
    folder = Path(path)
    files = sorted(p for p in folder.glob("*.tfrecords") if not p.name.startswith(".")) \
        if folder.is_dir() else [folder]
    records = 0
    for done, file in enumerate(files, 1):
        records += verify_file(file, sample)
        if progress is not None:
            progress(done, len(files))
    return {"files": len(files), "records": records, "volumes": info.num_volumes, "label_size": info.label_size}
