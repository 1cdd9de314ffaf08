"""Run checkpoints: path-keyed round trip and pruning, fallback past damaged checkpoints, the earlier layout,
and kill -9 while saving."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import checkpoints
from tf3dstylegan.backend.tensorflow import checkpoints as tf_checkpoints

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


class Model:
    """Stands in for a Keras model: variables with paths."""

    def __init__(self, values):
        self.variables = [tf.Variable(v, name=name) for name, v in values.items()]
        for var, name in zip(self.variables, values):
            var.path = name  # what Keras 3 variables carry


def test_path_keys_do_not_depend_on_creation_order(tmp_path):
    a = Model({"block/a": np.ones(3, np.float32), "block/b": np.full(3, 2.0, np.float32)})
    writer = tf_checkpoints.CheckpointWriter(tmp_path, tf_checkpoints.nodes({"G": a}))
    writer.save(1)
    swapped = Model({"block/b": np.zeros(3, np.float32), "block/a": np.zeros(3, np.float32)})  # same shapes
    tf_checkpoints.restore_newest(tmp_path, lambda layout: tf_checkpoints.nodes({"G": swapped}, layout=layout))
    assert swapped.variables[0].numpy().tolist() == [2.0] * 3 and swapped.variables[1].numpy().tolist() == [1.0] * 3


def test_keeps_the_newest_and_falls_back_past_a_damaged_one(tmp_path):
    var = tf.Variable(np.zeros(5, np.float32))
    rng = tf.random.Generator.from_seed(1)
    writer = tf_checkpoints.CheckpointWriter(tmp_path, {"var": var, "rng": rng}, keep=2)
    for step in range(1, 5):
        var.assign(np.full(5, step, np.float32))
        writer.save(step)
    assert [checkpoints.checkpoint_step(p) for p, _ in checkpoints.candidates(tmp_path)] == [4, 3]
    data = next(tmp_path.glob("ckpt-4.data-*"))
    data.write_bytes(data.read_bytes()[:-7])  # truncated newest checkpoint
    var.assign(np.zeros(5, np.float32))
    lines = []
    found = tf_checkpoints.restore_newest(tmp_path, lambda layout: {"var": var, "rng": rng}, log=lines.append)
    assert checkpoints.checkpoint_step(found) == 3 and var.numpy().tolist() == [3.0] * 5
    assert len(lines) == 1 and "skipping checkpoint" in lines[0] and "ckpt-4" in lines[0]
    index = tmp_path / "ckpt-3.index"
    index.write_bytes(index.read_bytes()[:20])  # now the other one too
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint fits"):
        tf_checkpoints.restore_newest(tmp_path, lambda layout: {"var": var, "rng": rng}, log=lambda _: None)


def test_checkpoints_of_the_earlier_layout_still_load():
    """tests/data/run-v0.1: a tiny run written before checkpoints were keyed by path (positional layout)."""
    from tf3dstylegan.loading import load_network
    ref = np.load(DATA / "run-v0.1" / "reference.npz")
    nets = load_network(DATA / "run-v0.1", log=lambda line: pytest.fail(line))
    assert checkpoints.checkpoint_step(nets.source) == 3
    np.testing.assert_allclose(nets.G_ema(ref["z"], noise_mode="const").numpy(), ref["G_ema"], atol=1e-6)
    np.testing.assert_allclose(nets.D(nets.G(ref["z"], noise_mode="const")).numpy(), ref["D"], atol=1e-5)
    snapshot = load_network(DATA / "run-v0.1" / "network-snapshot-000000.keras")
    np.testing.assert_allclose(snapshot.G_ema(ref["z"], noise_mode="const").numpy(), ref["snapshot"], atol=1e-6)


SAVER = """
import sys, numpy as np, tensorflow as tf
from tf3dstylegan.backend.tensorflow.checkpoints import CheckpointWriter
var = tf.Variable(np.zeros(2_000_000, np.float32))  # 8 MB: saving takes a while
writer = CheckpointWriter(sys.argv[1], {"var": var}, keep=2)
step = 0
while True:
    step += 1
    var.assign(np.full(2_000_000, step, np.float32))
    writer.save(step)
    print(step, flush=True)
"""


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_loadable_checkpoint(tmp_path):
    var = tf.Variable(np.zeros(2_000_000, np.float32))
    for delay in (0.3, 0.75, 1.2):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = proc.stdout.readline()  # wait until at least one checkpoint is complete
        assert first.strip(), "saver produced no checkpoint"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        found = tf_checkpoints.restore_newest(tmp_path, lambda layout: {"var": var}, log=lambda _: None)
        step = checkpoints.checkpoint_step(found)
        np.testing.assert_array_equal(var.numpy()[[0, -1]], [step, step])
