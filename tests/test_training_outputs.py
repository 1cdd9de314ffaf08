"""Preview PNGs, progress lines, stats files, strategy choice and resuming from a legacy pickle."""
import json

import numpy as np
import pytest

from tf3dstylegan.training import distribute, preview, stats


def test_middle_slices_pick_the_centre_of_each_axis_with_z_up():
    volume = np.zeros((4, 6, 8), np.float32)
    volume[2, :, :] += 1   # sagittal plane x = 2
    volume[:, 3, :] += 2   # coronal plane y = 3
    volume[:, :, 4] += 4   # axial plane z = 4
    volume[2, 3, 7] = 100  # top of the middle column
    sagittal, coronal, axial = preview.middle_slices(volume)
    assert sagittal.shape == (8, 6) and coronal.shape == (8, 4) and axial.shape == (6, 4)
    assert sagittal[0, 3] == 100 and coronal[0, 2] == 100  # z = 7 is the first (top) row
    # axial: z = 4 only, rows are y from the top (y = 5) down, so y = 3 is row 2
    assert axial[0, 0] == 4 and axial[2, 0] == 4 + 2 and axial[2, 2] == 4 + 2 + 1 and axial[0, 2] == 4 + 1


def test_preview_grid_and_png_round_trip(tmp_path):
    volumes = np.linspace(-1, 1, 3 * 4 * 6 * 8).reshape(3, 4, 6, 8, 1).astype(np.float32)
    image = preview.preview_grid(volumes, columns=2)
    tile_h, tile_w = 8, 6 + 4 + 4 + 2 * preview.GAP
    assert image.shape == (2 * tile_h + preview.GAP, 2 * tile_w + preview.GAP) and image.dtype == np.uint8
    assert image.max() > 200 and image[:tile_h, :tile_w].min() < 60
    path = tmp_path / "grid.png"
    preview.write_png(path, image)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(preview.read_png(path), image)
    assert not (tmp_path / "grid.png.tmp").exists()


def test_progress_line_and_stats_files(tmp_path):
    tick = stats.TickStats()
    tick.add({"loss/G": 1.0, "loss/D": 2.0})
    tick.add({"loss/G": 3.0, "loss/D": 4.0, "loss/G_reg": 5.0})
    means = tick.means()
    assert means == {"loss/G": 2.0, "loss/D": 3.0, "loss/G_reg": 5.0} and tick.means() == {}
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
    assert default.num_replicas_in_sync == 1 and distribute.is_chief(default)
    assert distribute.describe(default) == "default strategy, 1 replica(s)"
    with pytest.raises(ValueError, match="only 0 GPU"):
        distribute.make_strategy("auto", gpus=2)
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.make_strategy("horovod")


@pytest.mark.slow
def test_resume_from_the_original_pickle_copies_g_d_and_g_ema(fixture_dir):
    import tensorflow as tf
    from tf3dstylegan import load_config, load_network
    from tf3dstylegan.training.loop import build_state, load_weights
    cfg = load_config("2mm-fd16")
    state = build_state(cfg, tf.distribute.get_strategy(), 4, 0, "float32", False)
    lines = []
    load_weights(fixture_dir / "network.pkl", state, log=lines.append)
    reference = load_network(fixture_dir / "network.pkl")
    for name in ("G", "D", "G_ema"):
        for ours, theirs in zip(getattr(state, name).variables, getattr(reference, name).variables):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert lines == []
    with pytest.raises(ValueError, match="does not match config"):
        small = build_state(load_config("2mm-fd16", fmap_min=8, fmap_max=8), tf.distribute.get_strategy(), 4, 0,
                            "float32", False)
        load_weights(fixture_dir / "network.pkl", small)
