"""Atomic checkpoints: round trip, pruning, leftovers, and kill -9 while saving."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.training.checkpoint import CheckpointStore, checkpoint_step, latest_checkpoint

REPO = Path(__file__).resolve().parent.parent


def test_round_trip_keeps_the_last_few(tmp_path):
    var = tf.Variable(np.zeros(5, np.float32))
    rng = tf.random.Generator.from_seed(1)
    store = CheckpointStore(tmp_path, keep=2, var=var, rng=rng)
    for step in range(1, 5):
        var.assign(np.full(5, step, np.float32))
        store.save(step)
    state_at_4 = rng.state.numpy().copy()
    expected_draw = rng.normal([3]).numpy()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000003", "ckpt-000000004", "latest"]
    found = latest_checkpoint(tmp_path)
    assert checkpoint_step(found) == 4
    var.assign(np.zeros(5, np.float32))
    store.restore(found)
    np.testing.assert_array_equal(var.numpy(), np.full(5, 4.0))
    np.testing.assert_array_equal(rng.state.numpy(), state_at_4)
    np.testing.assert_array_equal(rng.normal([3]).numpy(), expected_draw)


def test_latest_ignores_half_written_and_dangling(tmp_path):
    store = CheckpointStore(tmp_path, keep=3, var=tf.Variable(1.0))
    store.save(7)
    (tmp_path / "ckpt-000000009.tmp").mkdir()                      # killed while writing
    (tmp_path / "ckpt-000000008").mkdir()                          # no index file: incomplete
    assert checkpoint_step(latest_checkpoint(tmp_path)) == 7
    (tmp_path / "latest").write_text("ckpt-000000011\n")           # names something gone
    assert checkpoint_step(latest_checkpoint(tmp_path)) == 7
    (tmp_path / "latest").unlink()
    assert checkpoint_step(latest_checkpoint(tmp_path)) == 7
    store.save(12)
    assert not (tmp_path / "ckpt-000000009.tmp").exists()          # leftovers cleaned on the next save
    assert latest_checkpoint(tmp_path / "missing") is None


SAVER = """
import sys, numpy as np, tensorflow as tf
from tf3dstylegan.training.checkpoint import CheckpointStore
var = tf.Variable(np.zeros(2_000_000, np.float32))  # 8 MB: saving takes a while
store = CheckpointStore(sys.argv[1], keep=2, var=var)
step = 0
while True:
    step += 1
    var.assign(np.full(2_000_000, step, np.float32))
    store.save(step)
    print(step, flush=True)
"""


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_loadable_latest(tmp_path):
    var = tf.Variable(np.zeros(2_000_000, np.float32))
    for delay in (0.3, 0.75, 1.2):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = proc.stdout.readline()  # wait until at least one checkpoint is complete
        assert first.strip(), "saver produced no checkpoint"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        found = latest_checkpoint(tmp_path)
        step = checkpoint_step(found)
        CheckpointStore(tmp_path, var=var).restore(found)
        np.testing.assert_array_equal(var.numpy()[[0, -1]], [step, step])
