"""Progress lines, stats files, strategy choice and resuming from a legacy pickle."""
import json

import numpy as np
import pytest

from tf3dstylegan.backend.tensorflow import distribute
from tf3dstylegan.training import stats


def test_progress_line_and_stats_files(tmp_path):
    import tensorflow as tf
    tick = stats.DeviceMeans()
    tick.update({"loss/G": tf.constant(1.0), "loss/D": tf.constant(2.0)})
    tick.update({"loss/G": tf.constant(3.0), "loss/D": tf.constant(4.0), "loss/G_reg": tf.constant(5.0)})
    means = tick.read_and_reset()
    assert means == {"loss/G": 2.0, "loss/D": 3.0, "loss/G_reg": 5.0}
    tick.update({"loss/G": tf.constant(7.0)})
    assert tick.read_and_reset()["loss/G"] == 7.0  # reset after each read
    record = dict(tick=3, step=40, nimg=640, kimg=0.64, time=3725.0, sec_per_tick=12.5, sec_per_kimg=100.0,
                  volumes_per_sec=10.0, eta=90.0, memory_mb=512.0, **means)
    line = stats.progress_line(record)
    for part in ("tick 3", "kimg 0.640", "time 1h 02m 05s", "sec/kimg 100.0", "eta 1m 30s", "G 2.0000", "Greg 5.0000"):
        assert part in line, part
    writer = stats.StatsWriter(tmp_path)
    writer.write(record)
    writer.write(dict(record, tick=4))
    lines = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [x["tick"] for x in lines] == [3, 4] and lines[0]["loss/G"] == 2.0
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_strategy_choice_on_one_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    default = distribute.make_strategy("auto")
    assert default.num_replicas_in_sync == 1 and default.extended.should_checkpoint
    assert distribute.describe(default) == "default strategy, 1 replica(s)"
    with pytest.raises(ValueError, match="only 0 GPU"):
        distribute.make_strategy("auto", gpus=2)
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.make_strategy("horovod")


@pytest.mark.slow
def test_resume_from_the_original_pickle_copies_g_d_and_g_ema(fixture_dir):
    import tensorflow as tf
    from tf3dstylegan import load_config, load_network
    from tf3dstylegan.backend.tensorflow.state import build_state
    from tf3dstylegan.training.transfer import MODELS, initialize_from
    cfg = load_config("2mm-fd16")
    state = build_state(cfg, tf.distribute.get_strategy(), 4, 0, "float32", False)
    lines = []
    initialize_from(fixture_dir / "network.pkl", {m: getattr(state, m) for m in MODELS}, cfg.name, log=lines.append)
    reference = load_network(fixture_dir / "network.pkl")
    for name in ("G", "D", "G_ema"):
        for ours, theirs in zip(getattr(state, name).variables, getattr(reference, name).variables):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert lines == []
    with pytest.raises(ValueError, match="does not match config"):
        small = build_state(load_config("2mm-fd16", fmap_min=8, fmap_max=8), tf.distribute.get_strategy(), 4, 0,
                            "float32", False)
        initialize_from(fixture_dir / "network.pkl", {m: getattr(small, m) for m in MODELS}, small.cfg.name)
