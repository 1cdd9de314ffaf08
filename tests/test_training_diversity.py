"""Diversity during training (MS-SSIM of generated and real pairs, on the TensorFlow and JAX trainers) and the
TensorBoard previews of a real run."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from backends import requires, run_on
from tf3dstylegan import load_config
from tf3dstylegan.data import RecordWriter
from tf3dstylegan.metrics.msssim import ms_ssim_3d
from tf3dstylegan.training import train
from tf3dstylegan.training.diversity import LATENT_STREAM, PAIRS, DiversityProbe, real_pairs_msssim
from tf3dstylegan.training.stats import progress_line

SMALL = dict(base_size=[5, 6, 7], resolution_log2=4, fmap_min=8, fmap_max=8, latent_size=8, dlatent_size=8,
             mapping_fmaps=8, mapping_layers=2, batch_size=4, tick_kimg=0.004)  # 20x24x28: MS-SSIM's minimum is 16


def smooth_volumes(count, shape, seed=0):
    """[count, X, Y, Z] in [0, 1]: random blobs (MS-SSIM of distinct ones well below 1)."""
    from scipy.ndimage import gaussian_filter
    noise = np.random.default_rng(seed).standard_normal((count, *shape))
    blobs = np.stack([gaussian_filter(v, 2.0) for v in noise])
    return ((blobs - blobs.min()) / (blobs.max() - blobs.min())).astype(np.float32)


def write_records(folder, volumes):
    with RecordWriter(folder, 4) as writer:
        for volume in volumes:
            writer.write(volume)
    return folder


def test_real_pairs_are_the_first_volumes_in_consecutive_pairs(tmp_path):
    volumes = smooth_volumes(2 * PAIRS + 3, (16, 18, 20))
    folder = write_records(tmp_path / "data", volumes)
    expected = np.mean([ms_ssim_3d(volumes[i], volumes[i + 1]) for i in range(0, 2 * PAIRS, 2)])
    assert real_pairs_msssim(folder) == pytest.approx(expected, abs=1e-6)  # float32 blur (metrics.msssim)
    assert real_pairs_msssim(folder, pairs=2) == pytest.approx(
        np.mean([ms_ssim_3d(volumes[0], volumes[1]), ms_ssim_3d(volumes[2], volumes[3])]), abs=1e-6)


class Collapsed:
    """A stand-in generator: one volume for every latent (collapse) or a volume per latent."""
    latent_size = 8

    def __init__(self, shape, collapsed):
        self.shape, self.collapsed = shape, collapsed
        self.calls = []

    def __call__(self, z, labels=None):
        self.calls.append((len(z), labels))
        seeds = [0] * len(z) if self.collapsed else [int(abs(v) * 1e6) for v in np.asarray(z)[:, 0]]
        return np.stack([smooth_volumes(1, self.shape, s)[0] * 2 - 1 for s in seeds])[..., None]


def test_probe_sees_a_collapse_and_skips_volumes_too_small():
    cfg = load_config("2mm-fd16", **SMALL)
    probe = DiversityProbe(cfg, lambda ctx, step: None, seed=3)  # a dataset function: no real pairs
    assert probe.latents.shape == (2 * PAIRS, 8)
    np.testing.assert_array_equal(probe.latents, np.random.default_rng([3, LATENT_STREAM]).standard_normal(
        (2 * PAIRS, 8)).astype(np.float32))
    same, distinct = Collapsed(cfg.img_shape, True), Collapsed(cfg.img_shape, False)
    assert probe(same) == {"diversity/msssim_fakes": pytest.approx(1.0, abs=1e-6)}
    assert probe(distinct)["diversity/msssim_fakes"] < 0.9
    assert sum(n for n, _ in distinct.calls) == 2 * PAIRS and all(labels is None for _, labels in distinct.calls)
    tiny = load_config("2mm-fd16", **dict(SMALL, base_size=[2, 2, 3]))  # 8x8x12: below MS-SSIM's 16 voxels
    assert DiversityProbe(tiny, lambda ctx, step: None, seed=0)(same) == {}


def test_progress_line_shows_both_values():
    record = dict(tick=1, kimg=0.5, time=10.0, sec_per_tick=1.0, sec_per_kimg=2.0, eta=None, memory_mb=1.0,
                  **{"diversity/msssim_fakes": 0.99123, "diversity/msssim_reals": 0.96871})
    assert "msssim 0.9912 (reals 0.9687)" in progress_line(record)
    del record["diversity/msssim_reals"]
    assert progress_line(record).endswith("msssim 0.9912  mem 1MB")


@pytest.mark.slow
def test_a_training_run_logs_diversity_and_puts_each_preview_in_tensorboard(tmp_path):
    cfg = load_config("2mm-fd16", **SMALL)
    volumes = smooth_volumes(2 * PAIRS, cfg.img_shape, seed=1)
    folder = write_records(tmp_path / "data", volumes)
    lines = []
    run = train(cfg, str(folder), tmp_path / "runs", kimg=0.012, seed=5, snap=1, log=lines.append)
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in records] == [4, 8, 12]
    reals = np.mean([ms_ssim_3d(volumes[i], volumes[i + 1]) for i in range(0, 2 * PAIRS, 2)])
    assert all(r["diversity/msssim_reals"] == pytest.approx(reals, abs=1e-6) for r in records)
    assert all(f"(reals {reals:.4f})" in line for line in lines if line.startswith("tick "))
    # The last value, recomputed from the exported G_ema on the run's fixed latents.
    G = keras.models.load_model(run / "network-snapshot-000000.012.keras", compile=False)
    z = np.random.default_rng([5, LATENT_STREAM]).standard_normal((2 * PAIRS, 8)).astype(np.float32)
    fakes = (np.asarray(G(z, noise_mode="const"))[..., 0] + 1) / 2
    expected = np.mean([ms_ssim_3d(np.clip(fakes[i], 0, 1), np.clip(fakes[i + 1], 0, 1)) for i in range(0, 32, 2)])
    assert records[-1]["diversity/msssim_fakes"] == pytest.approx(expected, abs=1e-5)
    # TensorBoard: the diversity scalars and, per snapshot, the preview PNG with the pixels of fakes<kimg>.png.
    (events_file,) = run.glob("events.out.tfevents.*")
    events = list(tf.compat.v1.train.summary_iterator(str(events_file)))
    scalars = {(e.step, v.tag): v.simple_value for e in events for v in e.summary.value if v.HasField("simple_value")}
    assert scalars[(12, "diversity/msssim_fakes")] == pytest.approx(records[-1]["diversity/msssim_fakes"])
    assert scalars[(4, "diversity/msssim_reals")] == pytest.approx(reals)
    previews = {e.step: v.image for e in events for v in e.summary.value if v.HasField("image")}
    assert sorted(previews) == [4, 8, 12]
    for step, name in ((4, "000000.004"), (8, "000000.008"), (12, "000000.012")):
        stored = tf.io.decode_png((run / f"fakes{name}.png").read_bytes()).numpy()
        in_tensorboard = tf.io.decode_png(previews[step].encoded_image_string).numpy()
        assert (previews[step].height, previews[step].width) == stored.shape[:2]
        np.testing.assert_array_equal(in_tensorboard, stored)
        assert stored.std() > 0


JAX_TRAIN = """
import json, sys, numpy as np
from tf3dstylegan import load_config
from tf3dstylegan.training import train
out, fields = sys.argv[1], json.loads(sys.argv[2])
train(load_config("2mm-fd16", **fields), out + "/data", out + "/runs", kimg=0.008, seed=5, snap=1)
"""


@pytest.mark.slow
@requires("jax")
def test_the_jax_trainer_logs_diversity_too(tmp_path):
    cfg = load_config("2mm-fd16", **SMALL)
    volumes = smooth_volumes(2 * PAIRS, cfg.img_shape, seed=2)
    write_records(tmp_path / "data", volumes)
    run_on("jax", JAX_TRAIN, tmp_path, json.dumps(SMALL))  # without TensorFlow
    (run,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    reals = np.mean([ms_ssim_3d(volumes[i], volumes[i + 1]) for i in range(0, 2 * PAIRS, 2)])
    assert [r["nimg"] for r in records] == [4, 8]
    assert all(r["diversity/msssim_reals"] == pytest.approx(reals, abs=1e-6) for r in records)
    assert all(0 < r["diversity/msssim_fakes"] <= 1 for r in records)
    (events_file,) = run.glob("events.out.tfevents.*")
    events = list(tf.compat.v1.train.summary_iterator(str(events_file)))
    scalars = {(e.step, v.tag): v.simple_value for e in events for v in e.summary.value if v.HasField("simple_value")}
    assert scalars[(8, "diversity/msssim_fakes")] == pytest.approx(records[-1]["diversity/msssim_fakes"])
