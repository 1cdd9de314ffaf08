"""Reproducible train/validation split of a folder of volumes (fixes the original's createTrainValid)."""
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from tf3dstylegan.data.volumes import DataError, list_volume_files


def split_folder(folder, *, valid_fraction=0.1, seed=0, copy=False, train_dir=None, valid_dir=None):
    """Put a seeded random round(valid_fraction * n) files (at least 1, without replacement) of
    `folder` into `<folder>_valid` and the rest into `<folder>_train`, as absolute symlinks (or
    copies). Each output folder is built under a temporary name and renamed when complete.
    Returns (train_files, valid_files), lists of names."""
    folder = Path(folder).resolve()
    files = list_volume_files(folder)
    if not 0.0 < valid_fraction < 1.0:
        raise DataError("--valid_fraction", f"must be in (0, 1), got {valid_fraction}")
    if len(files) < 2:
        raise DataError(folder, f"needs at least 2 files to split, has {len(files)}")
    num_valid = min(len(files) - 1, max(1, int(round(valid_fraction * len(files)))))
    chosen = set(np.random.default_rng(seed).choice(len(files), num_valid, replace=False).tolist())
    valid = [f for i, f in enumerate(files) if i in chosen]
    train = [f for i, f in enumerate(files) if i not in chosen]
    outputs = [(Path(train_dir or f"{folder}_train"), train), (Path(valid_dir or f"{folder}_valid"), valid)]
    for out, _ in outputs:
        if out.exists():
            raise DataError(out, "already exists; remove it or choose another name")
    for out, members in outputs:
        _populate_atomically(out, members, copy)
    return [f.name for f in train], [f.name for f in valid]


def _populate_atomically(out, members, copy):
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        for src in members:
            if copy:
                shutil.copy2(src, tmp / src.name)
            else:
                os.symlink(src, tmp / src.name)  # src is absolute
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
