"""A cache of what the metrics compute from the real volumes alone, so that evaluating several generators or
snapshots against the same records folder computes it once.

Stored per records folder and request: the features of real halves A and B in every feature space, the MS-SSIM
of their pairs, their pooled volumes (memorisation) and the real-vs-real bMMD² values. The key hashes the
folder's resolved path with its files' names, sizes and modification times, the metrics, the number of
volumes, the batch size, whether half B is used, and the feature networks' weights (`weights_digest`), so a
changed record, request or network never reads a stale entry. Arrays are read with allow_pickle=False, and an
entry is used only when its arrays are numeric and match the sha256 stored inside it (`checksum`): a truncated,
edited or foreign entry is recomputed (and rewritten).
"""
import zipfile
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tf3dstylegan import io

FORMAT = 2  # 2: entries carry a checksum
FOLDER = "metrics-reals"
CHECKSUM = "checksum"


def weights_digest(weights: dict) -> str:
    """sha256 of {name: array} weights (names, dtypes, shapes and bytes): identifies a feature network."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(data, metrics, num, batch_size, reference, networks_digest) -> str | None:
    """The entry's name for a records folder `data` and this request; None for data that is not a folder."""
    if not isinstance(data, (str, os.PathLike)) or not Path(data).is_dir():
        return None
    folder = Path(data).resolve()
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    request = [FORMAT, str(folder), files, sorted(metrics), int(num), int(batch_size), bool(reference),
               networks_digest]
    return hashlib.sha256(json.dumps(request).encode()).hexdigest()[:40]


def entry_path(key, cache_dir=None) -> Path:
    return io.cache_dir(cache_dir) / FOLDER / f"{key}.npz"


def save(path, arrays: dict) -> None:
    """Write {name: array} atomically (a partial write never becomes an entry)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, **{CHECKSUM: np.asarray(weights_digest(arrays))})


def load(path) -> dict | None:
    """{name: array} of an entry, or None when it is missing, unreadable, not numeric or does not match its
    checksum (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = dict(stored)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    checksum = arrays.pop(CHECKSUM, None)
    if checksum is None or not all(np.issubdtype(a.dtype, np.number) for a in arrays.values()):
        return None
    return arrays if str(checksum) == weights_digest(arrays) else None
