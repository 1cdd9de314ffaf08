"""Checkpoints of a training run (`<run>/checkpoints/`): which there are, and the portable format.

Every variable is keyed by its Keras path, so that a change in creation order can never swap two variables.
Layouts: "path", TensorFlow's (`ckpt-<step>.index` + data, by `tf.train.CheckpointManager`: see
`tf3dstylegan.backend.tensorflow.checkpoints`, which also reads the earlier "positional" layout, `ckpt-<step>/`
folders); "npz", the portable one of the other backends (`ckpt-<step>.npz`: one array per variable path, written to
a temporary name and renamed). Reading falls back: the newest checkpoint that reads completely is used, and each one
skipped is reported with the reason.
"""
import math
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np

from tf3dstylegan.io import atomic_path

CHECKPOINT_NAME = "ckpt"
_FOLDER = re.compile(r"^ckpt-(\d+)$")  # the earlier layout: one folder per checkpoint
_PREFIX = re.compile(r"^ckpt-(\d+)\.index$")
_DATA = re.compile(r"^ckpt-(\d+)\.data-\d+-of-\d+$")
_NPZ = re.compile(r"^ckpt-(\d+)\.npz$")
_NUMBERED = re.compile(r"^([^/]+?)(?:_\d+)?/")


class CheckpointError(ValueError):
    """No checkpoint of a run can be read into the given objects."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (its temporary folder is removed; older checkpoints stay)."""


def checkpoint_step(path) -> int:
    """The step of a checkpoint (a `ckpt-<step>` prefix or folder, or `ckpt-<step>.npz`)."""
    return int(Path(path).name.split("-")[-1].split(".")[0])


def candidates(directory):
    """(path, layout) of every complete checkpoint in `directory`, newest first; layout 'path', 'positional' or
    'npz'."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        if _PREFIX.match(entry.name):
            found.append((directory / entry.name[:-len(".index")], "path"))
        elif _FOLDER.match(entry.name) and (entry / f"{CHECKPOINT_NAME}.index").is_file():
            found.append((entry, "positional"))
        elif _NPZ.match(entry.name) and entry.is_file():
            found.append((entry, "npz"))
    return sorted(found, key=lambda item: (checkpoint_step(item[0]), item[1] == "path"), reverse=True)


def incomplete(directory):
    """Names ('ckpt-5') of checkpoints whose data files are in `directory` without their .index, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = {entry.name.split(".data-")[0] for entry in directory.iterdir() if _DATA.match(entry.name)}
    return sorted((name for name in found if not (directory / f"{name}.index").exists()), key=checkpoint_step,
                  reverse=True)


def remove_temporaries(directory, step=None):
    """Remove the `ckpt-<step>_temp` folders (all steps when None) that an interrupted or failed save leaves."""
    directory = Path(directory)
    if directory.is_dir():
        for entry in directory.glob(f"{CHECKPOINT_NAME}-{'*' if step is None else int(step)}_temp*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def read_prefix(path, layout):
    """The file prefix tf.train.Checkpoint reads for a candidate."""
    return str(Path(path) / CHECKPOINT_NAME) if layout == "positional" else str(path)




def write_arrays(directory, step, arrays, keep):
    """`ckpt-<step>.npz` of {variable path: array} in `directory` (a temporary name, then renamed), then all but the
    newest `keep` npz checkpoints removed. CheckpointWriteError naming the folder when it cannot be written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / f"{CHECKPOINT_NAME}-{int(step)}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    except OSError as err:
        raise CheckpointWriteError(f"{directory}: cannot write checkpoint {step} ({err.strerror or err}); the last "
                                   f"good checkpoint is kept") from None
    for old, layout in [c for c in candidates(directory) if c[1] == "npz"][keep:]:
        old.unlink(missing_ok=True)
    return directory / f"{CHECKPOINT_NAME}-{int(step)}.npz"


def read_arrays(path, expected):
    """{variable path: array} of an npz checkpoint, for `expected` {path: (shape, dtype)}: every expected path there
    with its shape, each member's size checked before it is read (a crafted file cannot make us allocate more than
    the networks need). ValueError naming what does not fit."""
    with zipfile.ZipFile(path) as archive:
        sizes = {info.filename[:-len(".npy")]: info.file_size for info in archive.infolist()}
    missing = sorted(set(expected) - set(sizes))
    if missing:
        raise ValueError(f"{len(missing)} variables missing (e.g. {missing[0]})")
    out = {}
    with np.load(path, allow_pickle=False) as stored:
        for key, (shape, dtype) in expected.items():
            if sizes[key] > np.dtype(dtype).itemsize * math.prod(shape) + 4096:
                raise ValueError(f"{key} holds {sizes[key]:,} bytes, more than its shape {list(shape)} needs")
            value = stored[key]
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"{key} has shape {list(value.shape)}, expected {list(shape)}")
            out[key] = value
    return out


def restore_newest_arrays(directory, expected, log=print):
    """(path, arrays) of the newest npz checkpoint of `directory` that read_arrays accepts; each skipped one is
    reported; CheckpointError when none is left."""
    found = [path for path, layout in candidates(directory) if layout == "npz"]
    if not found:
        raise CheckpointError(f"{directory}: no complete checkpoint")
    problems = []
    for path in found:
        try:
            return path, read_arrays(path, expected)
        except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as err:
            problem = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            problems.append(f"{path.name}: {problem}")
            log(f"skipping checkpoint {path} (unreadable or does not fit: {problem})")
    raise CheckpointError(f"{directory}: no checkpoint fits ({'; '.join(problems)})")


def variable_key(var, optimizer=False):
    """A variable's checkpoint key: its Keras path ('mapping/dense0/weight'); for an optimizer's the number Keras
    appends to the optimizer's name per process ('adam_1/...') is dropped ('adam/...')."""
    return _NUMBERED.sub(r"\1/", var.path) if optimizer else var.path


def variable_keys(groups, optimizers=()):
    """{'<group>/<variable key>': variable} of {group name: variables} (the groups named in `optimizers` hold
    optimizer variables)."""
    keys = {}
    for group, variables in groups.items():
        for var in variables:
            key = f"{group}/{variable_key(var, optimizer=group in optimizers)}"
            if key in keys:
                raise ValueError(f"two variables share the path {key!r}: cannot key a checkpoint by path")
            keys[key] = var
    return keys


def expected_arrays(keys):
    """{key: (shape, dtype)} of variable_keys' variables: what read_arrays checks a checkpoint against."""
    return {key: (tuple(var.shape), var.dtype) for key, var in keys.items()}
