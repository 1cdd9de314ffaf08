"""Crash-safe training checkpoints: `<run>/checkpoints/ckpt-<step>/` directories and a `latest` pointer.

A checkpoint is written into `ckpt-<step>.tmp/`, renamed to `ckpt-<step>/` when complete, and only then named
in `latest` (written to `latest.tmp` and renamed). A kill at any moment leaves `latest` naming a complete
checkpoint; leftovers `*.tmp` are removed on the next save.
"""
import os
import re
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

PREFIX = "ckpt"
_NAME = re.compile(r"^ckpt-(\d+)$")


class CheckpointStore:
    """tf.train.Checkpoint of the given objects, saved atomically under `directory`, keeping the last `keep`."""

    def __init__(self, directory, keep=3, **objects):
        self.directory = Path(directory)
        self.keep = keep
        self.checkpoint = tf.train.Checkpoint(**objects)

    def save(self, step, chief=True):
        """Write the checkpoint of `step`; non-chief workers write to a scratch folder (they must take part)."""
        if not chief:
            scratch = tempfile.mkdtemp(prefix="tf3dstylegan-worker-ckpt-")
            try:
                self.checkpoint.write(os.path.join(scratch, PREFIX))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        name = f"{PREFIX}-{int(step):09d}"
        tmp, final = self.directory / f"{name}.tmp", self.directory / name
        self.checkpoint.write(str(tmp / PREFIX))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = self.directory / "latest.tmp"
        pointer.write_text(name + "\n")
        os.replace(pointer, self.directory / "latest")
        self._prune(keep_name=name)
        return final

    def restore(self, path):
        """Load a checkpoint folder written by `save` into the tracked objects."""
        self.checkpoint.read(str(Path(path) / PREFIX)).assert_existing_objects_matched()

    def _prune(self, keep_name):
        complete = sorted(complete_checkpoints(self.directory), key=lambda p: p.name)
        for old in complete[:-self.keep] if self.keep > 0 else []:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)


def variables_node(variables):
    """A checkpoint node holding variables by position (Keras 3 models and optimizers keep their layers and
    slots in plain lists that tf.train.Checkpoint does not follow, so they are listed explicitly)."""
    return tf.train.Checkpoint(**{f"v{i:05d}": v for i, v in enumerate(variables)})


def complete_checkpoints(directory):
    """Checkpoint folders that finished writing (renamed from .tmp), in any order."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir()
            if p.is_dir() and _NAME.match(p.name) and (p / f"{PREFIX}.index").is_file()]


def latest_checkpoint(directory):
    """The newest complete checkpoint folder under `directory`, or None."""
    directory = Path(directory)
    pointer = directory / "latest"
    if pointer.is_file():
        named = directory / pointer.read_text().strip()
        if named in complete_checkpoints(directory):
            return named
    found = sorted(complete_checkpoints(directory), key=lambda p: p.name)
    return found[-1] if found else None


def checkpoint_step(path) -> int:
    """The step number in a checkpoint folder's name."""
    return int(_NAME.match(Path(path).name).group(1))
