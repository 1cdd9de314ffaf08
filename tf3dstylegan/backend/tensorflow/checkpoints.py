"""TensorFlow's checkpoints of a training run: `tf.train.CheckpointManager` writes them, variables keyed by their
Keras paths (layout "path"); the earlier "positional" layout (`ckpt-<step>/` folders) is still read. Which
checkpoints a folder holds: `tf3dstylegan.checkpoints`."""
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from tf3dstylegan.checkpoints import (CHECKPOINT_NAME, CheckpointError, CheckpointWriteError, candidates,
                                      read_prefix, remove_temporaries, variable_key)

def path_keyed(variables, optimizer=False):
    """A checkpoint node holding variables under their keys (`tf3dstylegan.checkpoints.variable_key`)."""
    node = {}
    for var in variables:
        key = variable_key(var, optimizer)
        if key in node:
            raise ValueError(f"two variables share the path {key!r}: cannot key a checkpoint by path")
        node[key] = var
    return tf.train.Checkpoint(**node)


def positional(variables):
    """The earlier layout's node: variables keyed by position ('v00000', 'v00001', ...)."""
    return tf.train.Checkpoint(**{f"v{i:05d}": v for i, v in enumerate(variables)})


def nodes(models=None, optimizers=None, others=None, layout="path"):
    """{name: node} for tf.train.Checkpoint: models and optimizers as variable nodes, `others` as they are."""
    def node(variables, is_optimizer):
        return positional(variables) if layout == "positional" else path_keyed(variables, optimizer=is_optimizer)
    out = {name: node(model.variables, False) for name, model in (models or {}).items()}
    out.update({name: node(opt.variables, True) for name, opt in (optimizers or {}).items()})
    out.update(others or {})
    return out


def restore_newest(directory, make_nodes, complete=True, log=print, optional=()):
    """Read the newest readable checkpoint of `directory` into `make_nodes(layout)`'s objects; returns its path.

    complete=True requires every object to be matched (resuming training); False reads what is there (inference:
    the networks only, without warnings about the optimizers). Unreadable checkpoints are skipped and reported;
    CheckpointError when none is left. Nodes named in `optional` are left as they are when a checkpoint lacks them.
    """
    found = candidates(directory)
    if not found:
        raise CheckpointError(f"{directory}: no complete checkpoint")
    problems = []
    for path, layout in found:
        try:
            prefix = read_prefix(path, layout)
            present = {name.split("/")[0] for name, _ in tf.train.list_variables(prefix)} if optional else ()
            objects = {k: v for k, v in make_nodes(layout).items() if k not in optional or k in present}
            status = tf.train.Checkpoint(**objects).read(prefix)
            if complete:
                status.assert_existing_objects_matched()
            status.expect_partial()  # the manager's save_counter, and for inference the optimizers
        except (AssertionError, ValueError, IndexError, KeyError, tf.errors.OpError) as err:  # truncated: IndexError
            problem = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            problems.append(f"{path.name}: {problem}")
            log(f"skipping checkpoint {path} (unreadable or does not fit: {problem})")
            continue
        return path
    raise CheckpointError(f"{directory}: no checkpoint fits ({'; '.join(problems)})")


class CheckpointWriter:
    """Saves `objects` (path-keyed nodes) into `directory`, keeping the newest `keep`; workers that should not
    checkpoint (multi-worker, non-chief) write to a scratch folder, since every worker must take part."""

    def __init__(self, directory, objects, keep=3):
        self.directory = Path(directory)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.keep = keep
        self._manager = None

    def save(self, step, should_checkpoint=True):
        if not should_checkpoint:
            scratch = tempfile.mkdtemp(prefix="tf3dstylegan-worker-ckpt-")
            try:
                self.checkpoint.write(os.path.join(scratch, CHECKPOINT_NAME))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return None
        if self._manager is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=self.keep,
                                                       checkpoint_name=CHECKPOINT_NAME)
        try:
            path = self._manager.save(checkpoint_number=int(step))
        except (OSError, tf.errors.OpError) as err:  # read-only folder, full disk: keep the last good checkpoint
            remove_temporaries(self.directory, step)
            reason = getattr(err, "strerror", None) or str(getattr(err, "message", err)).split(";")[-1].split("[Op:")[0]
            raise CheckpointWriteError(f"{self.directory}: cannot write checkpoint {step} ({reason.strip()}); the "
                                       f"last good checkpoint is kept") from None
        for old, layout in candidates(self.directory)[self.keep:]:
            if layout == "positional":  # earlier-layout folders of a resumed run age out like the others
                shutil.rmtree(old, ignore_errors=True)
        return Path(path)
