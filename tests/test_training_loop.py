"""The training loop on tiny presets: outputs, resume, resume equivalence after kill -9, non-finite stop."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import load_config
from tf3dstylegan.checkpoints import candidates, checkpoint_step, read_prefix
from tf3dstylegan.loading import load_run_networks
from tf3dstylegan.training import NonFiniteLossError, resolve_run, train

REPO = Path(__file__).resolve().parent.parent
# The tiny preset: base [5, 6, 7] at 20x24x28, fmaps 8.
SMALL = dict(base_size=[5, 6, 7], resolution_log2=4, fmap_min=8, fmap_max=8, latent_size=8, dlatent_size=8,
             mapping_fmaps=8, mapping_layers=2, batch_size=4, g_reg_interval=2, d_loss="logistic_r1",
             d_reg_interval=2, tick_kimg=0.008)
TINY = dict(SMALL, base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4, tick_kimg=0.004)


def latest_step(checkpoint_dir):
    """The step of the newest complete checkpoint in a run's checkpoints folder."""
    return checkpoint_step(candidates(checkpoint_dir)[0][0])


def read_png(path):
    """Decoded by TensorFlow's PNG decoder (independent of our encoder): [H, W] uint8."""
    return tf.io.decode_png(Path(path).read_bytes(), channels=1).numpy()[..., 0]


def volumes_for(cfg, count=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (count, *cfg.img_shape, 1)).astype(np.float32)


def in_memory_data(volumes, batch, nan_from_step=None):
    """data(input_context, start_step): batches in a fixed order that continue where a resumed run stopped."""
    def make(ctx, start_step):
        ds = tf.data.Dataset.from_tensor_slices(volumes).repeat().batch(ctx.get_per_replica_batch_size(batch))
        if nan_from_step is not None:
            ds = ds.enumerate().map(lambda i, v: tf.where(i >= nan_from_step, np.nan, v))
        return ds.skip(start_step)
    return make


@pytest.mark.slow
def test_small_preset_trains_and_writes_every_output(tmp_path):
    cfg = load_config("2mm-fd16", **SMALL)
    lines = []
    run = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path, kimg=0.08, seed=1, snap=4, log=lines.append)
    assert run == tmp_path / "00000-2mm-fd16"
    options = json.loads((run / "training_options.json").read_text())
    assert options["config"]["base_size"] == [5, 6, 7] and options["batch"] == 4 and options["kimg"] == 0.08
    assert latest_step(run / "checkpoints") == 20
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in records] == [4, *range(12, 80, 8), 80]  # first step, every 8 volumes, the end
    for key in ("loss/G", "loss/D", "loss/G_reg", "loss/D_reg", "pl_mean", "sec_per_kimg", "volumes_per_sec",
                "memory_mb", "eta"):
        values = [r[key] for r in records if key in r and not (key == "eta" and r["tick"] == 0)]
        assert values and all(np.isfinite(v) for v in values), key
    assert records[0]["eta"] is None  # the first tick's step also compiles: no pace to extrapolate yet
    progress = [line for line in lines if line.startswith("tick ")]
    assert len(progress) == len(records)
    assert all("sec/kimg" in line and "eta" in line and "kimg" in line for line in progress)
    assert list(run.glob("events.out.tfevents.*"))
    snapshots = sorted(run.glob("network-snapshot-*.keras"))
    assert [p.name for p in snapshots] == ["network-snapshot-000000.004.keras", "network-snapshot-000000.036.keras",
                                           "network-snapshot-000000.068.keras", "network-snapshot-000000.080.keras"]
    png = read_png(run / "fakes000000.004.png")
    assert png.ndim == 2 and png.shape[0] >= 2 * 28 * 4 and png.std() > 0  # 2 rows of tiles, Z 28, enlarged 4x
    loaded = load_run_networks(run)
    import keras
    exported = keras.models.load_model(snapshots[-1], compile=False)
    z = tf.constant(np.random.default_rng(0).normal(size=(2, 8)), tf.float32)
    np.testing.assert_allclose(exported(z).numpy(), loaded.G_ema(z).numpy(), atol=1e-5)
    assert not list(run.rglob("*.tmp*"))

    lines.clear()  # rerunning continues the same run
    again = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path, kimg=0.088, seed=1, log=lines.append)
    assert again == run
    assert lines[0].startswith("resuming from step 20")
    assert latest_step(run / "checkpoints") == 22
    assert len(list((run / "checkpoints").glob("ckpt-*.index"))) == 3  # the last few are kept


def test_resolve_run_numbers_folders_and_finds_the_latest_of_the_same_job(tmp_path):
    from tf3dstylegan.training import TrainingOptions
    from tf3dstylegan.training.job import job_identity
    job = job_identity(load_config("2mm-fd16"), None, TrainingOptions().resolved(load_config("2mm-fd16")))
    assert resolve_run(tmp_path, "2mm-fd16", "auto", job) == (tmp_path / "00000-2mm-fd16", None)
    (tmp_path / "00000-2mm-fd16" / "checkpoints").mkdir(parents=True)
    (tmp_path / "00000-2mm-fd16" / "checkpoints" / "ckpt-4.index").write_text("")
    (tmp_path / "00000-2mm-fd16" / "training_options.json").write_text(json.dumps({"job": job}))
    (tmp_path / "00001-1mm-fd16").mkdir()
    (tmp_path / "00002-2mm-fd16").mkdir()  # newest, but never checkpointed
    lines = []
    run, found = resolve_run(tmp_path, "2mm-fd16", "auto", job, lines.append)
    assert run == tmp_path / "00000-2mm-fd16" and found == run / "checkpoints"
    assert lines == [f"not resuming {tmp_path / '00002-2mm-fd16'}: it has no training_options.json (not a run "
                     "folder, or one that never started)"]
    assert resolve_run(tmp_path, "2mm-fd16", None, job) == (tmp_path / "00003-2mm-fd16", None)
    assert resolve_run(tmp_path, "1mm-fd16", "auto", job, lines.append) == (tmp_path / "00003-1mm-fd16", None)
    with pytest.raises(ValueError, match="no training_options.json"):
        resolve_run(tmp_path, "2mm-fd16", str(tmp_path / "00002-2mm-fd16"), job)
    with pytest.raises(ValueError, match="no such run folder or network file"):
        resolve_run(tmp_path, "2mm-fd16", str(tmp_path / "missing.pkl"), job)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = load_config("2mm-fd16", **TINY)
    with pytest.raises(NonFiniteLossError, match="non-finite.*ending at step 3.*NaN"):
        train(cfg, in_memory_data(volumes_for(cfg), 4, nan_from_step=2), tmp_path, kimg=0.04, log=lambda _: None)
    assert latest_step(tmp_path / "00000-2mm-fd16" / "checkpoints") == 2
    loaded = load_run_networks(tmp_path / "00000-2mm-fd16")
    assert all(np.isfinite(v.numpy()).all() for v in loaded.G.variables + loaded.D.variables)


RESUME = """
import json, os, signal, sys
import numpy as np
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
from test_training_loop import TINY, in_memory_data, volumes_for
from tf3dstylegan import load_config
from tf3dstylegan.training import train
cfg = load_config("2mm-fd16", **dict(TINY, style_mixing_prob=0.9, no_noise=False))
kill_after = int(sys.argv[2])

def log(line):
    if kill_after and line.startswith(f"tick {kill_after - 1} "):  # the checkpoint of step kill_after is written
        os.kill(os.getpid(), signal.SIGKILL)

train(cfg, in_memory_data(volumes_for(cfg), 4), sys.argv[1], kimg=0.016, seed=5, log=log, aug="ada",
      ada_kimg=0.004)  # ADA's p moves a lot per step here: the resumed run must continue it exactly
"""


@pytest.mark.slow
def test_four_steps_equal_two_steps_killed_then_two_resumed(tmp_path):
    """With ADA on: G, D, G_ema, the statistics and p after a kill -9 and a resume equal a straight run's."""
    def run(outdir, kill_after):
        return subprocess.run([sys.executable, "-c", RESUME, str(outdir), str(kill_after)], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    straight = run(tmp_path / "straight", 0)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run(tmp_path / "resumed", 2)
    assert killed.returncode == -9
    assert latest_step(tmp_path / "resumed" / "00000-2mm-fd16" / "checkpoints") == 2
    resumed = run(tmp_path / "resumed", 0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_run_networks(tmp_path / "straight" / "00000-2mm-fd16")
    b = load_run_networks(tmp_path / "resumed" / "00000-2mm-fd16")
    assert checkpoint_step(a.source.rsplit("/", 1)[1]) == checkpoint_step(b.source.rsplit("/", 1)[1]) == 4
    for name in ("G", "D", "G_ema"):
        for va, vb in zip(getattr(a, name).variables, getattr(b, name).variables):
            np.testing.assert_allclose(vb.numpy(), va.numpy(), rtol=1e-5, atol=1e-7, err_msg=f"{name} {va.name}")
    stats_a = [json.loads(line) for line in (tmp_path / "straight/00000-2mm-fd16/stats.jsonl").read_text().splitlines()]
    stats_b = [json.loads(line) for line in (tmp_path / "resumed/00000-2mm-fd16/stats.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(stats_b[-1]["pl_mean"], stats_a[-1]["pl_mean"], rtol=1e-5)
    np.testing.assert_allclose(stats_b[-1]["loss/D"], stats_a[-1]["loss/D"], rtol=1e-5)
    assert [r["aug/p"] for r in stats_b] == [r["aug/p"] for r in stats_a][-len(stats_b):]
    final_p = []  # p moves after the 4th step, from r_t accumulated over steps 1-4 (2 of them before the kill)
    for run in ("straight", "resumed"):
        prefix = read_prefix(*candidates(tmp_path / run / "00000-2mm-fd16" / "checkpoints")[0])
        name = next(n for n, _ in tf.train.list_variables(prefix) if n.startswith("augment/p/"))
        final_p.append(float(tf.train.load_variable(prefix, name)))
    assert final_p[0] == final_p[1] and final_p[0] != 0.0


@pytest.mark.slow
def test_resume_from_a_keras_snapshot_initialises_the_generators(tmp_path):
    cfg = load_config("2mm-fd16", **TINY)
    first = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path / "a", kimg=0.004, log=lambda _: None)
    snapshot = first / "network-snapshot-000000.004.keras"
    lines = []
    second = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path / "b", kimg=0.004, resume=str(snapshot),
                   log=lines.append)
    assert any("holds no D" in line for line in lines) and any("initialised" in line for line in lines)
    assert json.loads((second / "training_options.json").read_text())["resume"] == str(snapshot)
    wider = cfg.replace(fmap_min=8, fmap_max=8)  # same name, another job: auto-resume starts a new run and says why
    lines.clear()
    third = train(wider, in_memory_data(volumes_for(wider), 4), tmp_path / "a", kimg=0.004, log=lines.append)
    assert third == tmp_path / "a" / "00001-2mm-fd16"
    assert lines[0] == f"not resuming {first}: its config field fmap_max is 4 (this run: 8); its config field " \
                       "fmap_min is 4 (this run: 8)"


MIXED = """
import json, os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
from test_training_loop import TINY, in_memory_data, volumes_for
from tf3dstylegan import load_config
from tf3dstylegan.training import train
cfg = load_config("2mm-fd16", **TINY)
train(cfg, in_memory_data(volumes_for(cfg), 4), sys.argv[1], kimg=0.008, precision="mixed_float16", log=print)
"""


@pytest.mark.slow
def test_mixed_float16_trains_with_float32_master_weights(tmp_path):
    proc = subprocess.run([sys.executable, "-c", MIXED, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "00000-2mm-fd16"
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss/G"]) and np.isfinite(r["loss/D"]) for r in records)
    assert json.loads((run / "training_options.json").read_text())["precision"] == "mixed_float16"
    found = read_prefix(*candidates(run / "checkpoints")[0])
    dtypes = {tf.train.load_variable(found, name).dtype
              for name, _ in tf.train.list_variables(found) if name.startswith("G/")}
    assert dtypes == {np.dtype("float32")}
    scalars = [tf.train.load_variable(found, name) for name, shape in
               tf.train.list_variables(found) if name.startswith("g_opt/") and shape == []]
    scales = [v for v in scalars if v.dtype.kind == "f" and v >= 1 and np.log2(v) == np.round(np.log2(v))]
    assert scales, "no loss scale (a power of two) among the G optimizer's scalars"


@pytest.mark.slow
def test_gradient_checkpointing_trains_like_the_plain_step(tmp_path):
    """Main steps recompute block activations; the lazy R1 and path-length steps (second order) do not."""
    cfg = load_config("2mm-fd16", **TINY)
    runs = []
    for checkpointing in (False, True):
        run = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path / str(checkpointing), kimg=0.008, seed=3,
                    gradient_checkpointing=checkpointing, log=lambda _: None)
        runs.append(load_run_networks(run))
    for name in ("G", "D"):
        for plain, recomputed in zip(getattr(runs[0], name).variables, getattr(runs[1], name).variables):
            np.testing.assert_allclose(recomputed.numpy(), plain.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_metrics_are_evaluated_at_snapshots_and_logged(tmp_path):
    """train(metrics=fn) evaluates fn(G_ema) at each snapshot into stats.jsonl (and TensorBoard)."""
    cfg = load_config("2mm-fd16", **TINY)
    seen = []

    def metrics(G_ema):
        volume = G_ema(tf.zeros([1, G_ema.latent_size])).numpy()
        seen.append(volume.shape)
        return {"mean_volume": float(volume.mean())}

    run = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path, kimg=0.008, metrics=metrics,
                log=lambda _: None)
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    logged = [r["metrics/mean_volume"] for r in records if "metrics/mean_volume" in r]
    assert seen and len(logged) == len(seen) and all(np.isfinite(logged))


@pytest.mark.slow
def test_xla_compiled_step_trains_and_scores_reals_like_the_plain_step(tmp_path):
    """--jit compiles the whole step (nesting the ops' own XLA kernels). Its random draws use XLA's generator,
    so only what does not depend on them is compared: D's first scores of the same real volumes."""
    cfg = load_config("2mm-fd16", **TINY)
    first = []
    for jit in (False, True):
        run = train(cfg, in_memory_data(volumes_for(cfg), 4), tmp_path / str(jit), kimg=0.008, seed=2, jit=jit,
                    log=lambda _: None)
        records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
        assert latest_step(run / "checkpoints") == 2
        assert all(np.isfinite(value) for r in records for key, value in r.items() if key.startswith("loss/"))
        first.append(records[0]["D/real"])
    np.testing.assert_allclose(first[1], first[0], rtol=1e-4, atol=1e-6)
