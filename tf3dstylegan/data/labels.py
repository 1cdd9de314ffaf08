"""Labels of a conditional dataset: the covariate encoding and the label files beside the records.

A label vector concatenates, per covariate in order, one standardised value ((x - mean) / std over
the dataset; std 1 when constant) for a continuous covariate, or a one-hot block over the sorted (or
declared) categories for a categorical one. Beside the records, `labels.json` holds the encoding and
`<name>-rxx.labels` the float32 [N, label_size] labels in record order as an .npy file, the
original 3D-StyleGAN's format (a folder may hold just that file). With shards, record j of shard s
(of S) is label row j * S + s: the order the records were written in.
"""
import dataclasses
import functools
import io
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from tf3dstylegan.data.table import (CATEGORICAL, CONTINUOUS, covariate_values, match_files, read_table)
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.io import write_bytes_atomic, write_text_atomic

ENCODING_FILE = "labels.json"
LABELS_SUFFIX = "-rxx.labels"
FORMAT = "tf3dstylegan-labels-v1"


@dataclasses.dataclass(frozen=True)
class Covariate:
    """One covariate: continuous (mean, std) or categorical (categories, one-hot in this order)."""

    name: str
    kind: str
    categories: Tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @property
    def size(self) -> int:
        return 1 if self.kind == CONTINUOUS else len(self.categories)

    def standardised(self, number) -> float:
        """(number - mean) / std of a continuous covariate; ValueError when it is not finite or too far from the
        data for a float32 label."""
        if not np.isfinite(number):
            raise ValueError(f"covariate {self.name!r} needs a finite number, got {number!r}")
        value = (number - self.mean) / self.std
        if not abs(value) <= float(np.finfo(np.float32).max):
            raise ValueError(f"covariate {self.name!r} = {number!r} is too far from the data (mean {self.mean:.4g}, "
                             f"std {self.std:.4g}) to be encoded as a float32 label")
        return value


@dataclasses.dataclass(frozen=True)
class LabelEncoding:
    """Covariates by name <-> float32 label vectors; `samples` ([M, label_size] encoded rows of the
    dataset, or None) is the empirical distribution that `sample` draws from."""

    covariates: Tuple[Covariate, ...]
    samples: Optional[np.ndarray] = dataclasses.field(default=None, compare=False)

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(c.name for c in self.covariates)

    @property
    def kinds(self) -> Tuple[str, ...]:
        return tuple(c.kind for c in self.covariates)

    @property
    def label_size(self) -> int:
        return sum(c.size for c in self.covariates)

    @classmethod
    def fit(cls, names, kinds, values, declared=None) -> "LabelEncoding":
        """The encoding of rows `values` ({name: float or str} each); `samples` are those rows encoded."""
        covariates = []
        for name, kind in zip(names, kinds):
            column = [v[name] for v in values]
            if kind == CONTINUOUS:
                data = np.asarray(column, np.float64)
                scale = float(np.max(np.abs(data))) or 1.0  # sums of values near 1e308 overflow; of data / scale not
                mean, std = float(np.mean(data / scale) * scale), float(np.std(data / scale) * scale)
                covariates.append(Covariate(name, kind, mean=mean, std=std if std > 0 else 1.0))
            else:
                categories = tuple((declared or {}).get(name) or sorted(set(column)))
                covariates.append(Covariate(name, CATEGORICAL, categories=categories))
        encoding = cls(tuple(covariates))
        return dataclasses.replace(encoding, samples=encoding.encode_rows(values))

    @classmethod
    def from_table(cls, path, files=None, columns=None, categorical=()) -> "LabelEncoding":
        """Fit on a covariate table's rows (those matching `files` when given; tf3dstylegan.data.table)."""
        table = read_table(path)
        rows = match_files(table, files) if files is not None else list(range(len(table.rows)))
        names, kinds, declared, values = covariate_values(table, rows, columns, categorical)
        return cls.fit(names, kinds, values, declared)

    def encode(self, values: Dict) -> np.ndarray:
        """{name: value} (numbers or strings, e.g. {"age": 72, "sex": "F"}) -> float32 [label_size];
        ValueError naming a missing or unknown covariate, a bad number or an unknown category."""
        unknown = sorted(set(values) - set(self.names))
        missing = [n for n in self.names if n not in values]
        if unknown or missing:
            what = f"unknown covariate {unknown[0]!r}" if unknown else f"missing covariate {missing[0]!r}"
            raise ValueError(f"{what} (expected {', '.join(self.names)})")
        parts = []
        for c in self.covariates:
            value = values[c.name]
            if c.kind == CONTINUOUS:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = float("nan")
                if not np.isfinite(number):
                    raise ValueError(f"covariate {c.name!r} needs a finite number, got {value!r}")
                parts.append([c.standardised(number)])
            else:
                if str(value) not in c.categories:
                    raise ValueError(f"unknown category {value!r} of covariate {c.name!r} "
                                     f"(expected {', '.join(c.categories)})")
                parts.append(np.eye(c.size)[c.categories.index(str(value))])
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros([0], np.float32)

    def encode_rows(self, rows) -> np.ndarray:
        """A list of {name: value} -> float32 [N, label_size]."""
        return np.stack([self.encode(r) for r in rows]) if rows else np.zeros([0, self.label_size], np.float32)

    def far_values(self, values: Dict, limit=5.0) -> Dict:
        """{name: standardised value} of the continuous covariates in {name: value} more than `limit` standard
        deviations from the dataset's mean (outside anything the network was trained on)."""
        far = {}
        for c in self.covariates:
            if c.kind == CONTINUOUS and c.name in values:
                z = (float(values[c.name]) - c.mean) / c.std
                if abs(z) > limit:
                    far[c.name] = z
        return far

    def decode(self, vector) -> Dict:
        """float32 [label_size] -> {name: float (continuous) or category (the largest one-hot entry)}."""
        vector = np.asarray(vector, np.float64).reshape(-1)
        if vector.size != self.label_size:
            raise ValueError(f"label vector has {vector.size} values, the encoding {self.label_size}")
        out, start = {}, 0
        for c in self.covariates:
            part = vector[start:start + c.size]
            if c.kind == CONTINUOUS:
                out[c.name] = float(part[0] * c.std + c.mean)
            else:
                out[c.name] = c.categories[int(np.argmax(part))]
            start += c.size
        return out

    def sample(self, rng, n) -> np.ndarray:
        """float32 [n, label_size]: rows drawn with replacement from `samples` (numpy Generator rng)."""
        if self.samples is None or len(self.samples) == 0:
            raise ValueError("this label encoding has no samples of the dataset's labels to draw from")
        return np.asarray(self.samples, np.float32)[rng.integers(0, len(self.samples), int(n))]

    def to_json(self, include_samples=False) -> dict:
        """A JSON-ready dict (the samples only when asked: they are the dataset's labels)."""
        value = {"format": FORMAT, "label_size": self.label_size,
                 "covariates": [{"name": c.name, "kind": c.kind, **({"mean": c.mean, "std": c.std}
                                 if c.kind == CONTINUOUS else {"categories": list(c.categories)})}
                                for c in self.covariates]}
        if include_samples and self.samples is not None:
            value["samples"] = np.asarray(self.samples, np.float32).tolist()
        return value

    @classmethod
    def from_json(cls, value) -> "LabelEncoding":
        """The inverse of to_json; ValueError when the dict is not a label encoding."""
        try:
            if value.get("format") != FORMAT:
                raise ValueError(f"format {value.get('format')!r}, expected {FORMAT!r}")
            covariates = tuple(Covariate(str(c["name"]), c["kind"], tuple(str(x) for x in c.get("categories", ())),
                                         float(c.get("mean", 0.0)), float(c.get("std", 1.0)))
                               for c in value["covariates"])
            if any(c.kind not in (CONTINUOUS, CATEGORICAL) or c.size < 1 or not np.isfinite([c.mean, c.std]).all()
                   or c.std <= 0 for c in covariates):
                raise ValueError("bad covariate entry")
            samples = np.asarray(value["samples"], np.float32) if "samples" in value else None
            encoding = cls(covariates, samples)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a label encoding: {err}") from None
        if samples is not None and (samples.ndim != 2 or samples.shape[1] != encoding.label_size):
            raise ValueError(f"not a label encoding: samples of shape {samples.shape}")
        return encoding


def labels_path(records_dir, name=None) -> Path:
    """`<records_dir>/<name>-rxx.labels` (name: the folder's name), where the original writes labels."""
    records_dir = Path(records_dir)
    return records_dir / f"{name or records_dir.name}{LABELS_SUFFIX}"


def write_labels(records_dir, labels, encoding=None, name=None):
    """Write float32 [N, L] labels as `<name>-rxx.labels` (.npy) and the encoding as labels.json, atomically.
    Returns the written paths."""
    labels = np.asarray(labels, np.float32)
    if labels.ndim != 2 or not np.isfinite(labels).all():
        raise ValueError(f"labels must be a finite [N, label_size] array, got shape {labels.shape}")
    buffer = io.BytesIO()
    np.save(buffer, labels, allow_pickle=False)
    outputs = [(labels_path(records_dir, name), write_bytes_atomic, buffer.getvalue())]
    if encoding is not None:  # serialised before anything is written: a value JSON cannot hold leaves no file
        text = json.dumps(encoding.to_json(), indent=2, allow_nan=False) + "\n"
        outputs.append((Path(records_dir) / ENCODING_FILE, write_text_atomic, text))
    written = []
    try:
        for path, write, value in outputs:
            written.append(write(path, value))
    except OSError as err:
        for path in written:
            path.unlink(missing_ok=True)
        raise DataError(path, f"cannot write: {err.strerror or err}") from None
    return written


def load_labels_file(path) -> np.ndarray:
    """float32 [N, L] from an .npy labels file, its claimed size checked against the file first."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ValueError("no .npy header")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(path, f"not a labels file (.npy float32 [N, label_size]): {err}") from None
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(path, f"labels must be a numeric [N, label_size] array, got {array.dtype} {array.shape}")
    array = np.array(array, np.float32)
    if not np.isfinite(array).all():
        raise DataError(path, "labels contain NaN or Inf values")
    return array


@functools.lru_cache(maxsize=32)
def parse_encoding(text: str) -> LabelEncoding:
    """The LabelEncoding of its JSON text (as ModelConfig.label_encoding holds it), parsed once per text;
    ValueError when it is not one."""
    encoding = LabelEncoding.from_json(json.loads(text))
    if encoding.samples is not None:
        encoding.samples.setflags(write=False)  # shared between callers
    return encoding


def _file_state(path):
    """(path, inode, mtime_ns, size) of a file, None when absent: what a cached read depends on."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size


def read_labels(records_dir):
    """(LabelEncoding or None, float32 [N, label_size] or None, read-only) of a records folder: the first
    `*.labels` file (as the original picks it) and labels.json; the encoding's samples are the labels.
    Read once while the files are unchanged (training, its input pipeline and the dataset checks all ask)."""
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        return None, None
    found = sorted(p for p in records_dir.glob("*.labels") if not p.name.startswith("."))
    labels_state = _file_state(found[0]) if found else None
    return _read_labels(str(records_dir.resolve()), labels_state, _file_state(records_dir / ENCODING_FILE))


@functools.lru_cache(maxsize=8)
def _read_labels(records_dir, labels_state, encoding_state):
    records_dir = Path(records_dir)
    labels = load_labels_file(labels_state[0]) if labels_state else None
    if labels is not None:
        labels.setflags(write=False)  # shared between callers
    encoding_file = records_dir / ENCODING_FILE
    if not encoding_file.is_file():
        return None, labels
    if labels is None:
        raise DataError(encoding_file, f"has no labels file beside it (<name>{LABELS_SUFFIX})")
    try:
        encoding = parse_encoding(encoding_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(encoding_file, str(err)) from None
    if encoding.label_size != labels.shape[1]:
        raise DataError(encoding_file, f"describes {encoding.label_size} label values, "
                                       f"{Path(labels_state[0]).name} has {labels.shape[1]}")
    return dataclasses.replace(encoding, samples=labels), labels
