"""Adaptive discriminator augmentation: the cost of the augmented training step, and training with vs without.

    python bench/bench_ada.py --what step --batch 2 --p 0,0.5,1          # (a) step time, plain vs augmented
    python bench/bench_ada.py --what train --kimg 30 --snap_kimg 2       # (b) demo data at 20x24x28
    python bench/bench_ada.py --what summary --records a.jsonl,b.jsonl  # (c) mean, sd over seeds of (b)
    python bench/bench_ada.py --what train --modes fixed --aug_p 0.5 --pipeline bgcfno
    python bench/bench_ada.py --what train --modes none --override d_loss=logistic_r1 --override d_gamma=0.5
(a) times TrainStep at 2mm-fd16 (80x96x112) without a pipe and with a fixed-p pipe per --p, interleaved in
one process so that load on the machine hits all alike (medians of wall and of this process's CPU seconds);
steps without lazy regularisation (the regularisers run every 16 steps; bench/step_timing.py). (b) trains
the demo preset (the 2mm-fd16 networks at 20x24x28, G_ema half-life 1 kimg) on the 32-subject demo dataset
at 8 mm, once per --modes (with --override config fields), with the same seed and data order, using TrainStep in a
loop of its own (built as the training loop builds its state), and prints per snapshot the slice FIDs and
MS-SSIM of generated pairs (tf3dstylegan.metrics, 32 generated vs the 32 real volumes; msssim_G: of the
trained G rather than G_ema), the real pairs' MS-SSIM, p, and the means since the last snapshot of D's logits
(D/real, D/fake) and of r_t (aug/rt, with a pipe; `--modes fixed --aug_p 0` measures r_t of plain training).
One JSON line per measurement; --outdir also writes each run's final G_ema preview PNG. (c) reads (b)'s
lines of several runs (e.g. --seed 1, 2, 3 per setting) and prints per setting and snapshot the mean and
standard deviation over seeds of each measure: single runs differ by more than the settings do.
"""
import json
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from step_timing import step_records, time_steps

flags.DEFINE_enum("what", "step", ["step", "train", "summary"],
                  "(a) step time, (b) training comparison or (c) summary of (b)'s records over seeds.")
flags.DEFINE_integer("batch", 2, "Global batch size.")
flags.DEFINE_string("pipeline", "bgc", "Augmentation pipeline (tf3dstylegan.training.augment).")
flags.DEFINE_list("p", ["0", "0.5", "1"], "(a) fixed augmentation probabilities to time.")
flags.DEFINE_integer("repeats", 3, "(a) timed steps per variant after one warm-up step.")
flags.DEFINE_list("modes", ["none", "ada"], "(b) augmentation modes to train with.")
flags.DEFINE_float("kimg", 30.0, "(b) thousands of real volumes shown per run.")
flags.DEFINE_float("snap_kimg", 2.0, "(b) kimg between metric snapshots.")
flags.DEFINE_float("target", 0.6, "(b) ADA target for r_t.")
flags.DEFINE_float("aug_p", None, "(b) p of mode 'fixed' (required with it); the start of mode 'ada'.")
flags.DEFINE_float("ada_kimg", 500.0, "(b) kimg for p to move by 1.")
flags.DEFINE_list("metrics", ["fid_slices", "msssim"], "(b) metrics per snapshot.")
flags.DEFINE_multi_string("override", [], "(b) config field override key=value, e.g. d_loss=logistic_r1.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("outdir", None, "(b) write fakes-<mode>.png of the final G_ema here.")
flags.DEFINE_list("records", [], "(c) files of (b)'s JSON lines to summarise.")
FLAGS = flags.FLAGS


def build_step(cfg, batch, seed, augment=None):
    """The TrainStep of a training state built as `train()` builds it (one device), with this pipe."""
    import tensorflow as tf
    from tf3dstylegan.backend.tensorflow.state import build_state
    return build_state(cfg, tf.distribute.get_strategy(), batch, seed,
                       augment=None if augment is None else lambda: augment).train_step


def step_time():
    """(a): seconds per training step without and with the pipe at each fixed p."""
    import tensorflow as tf
    from tf3dstylegan import load_config
    from tf3dstylegan.training.augment import AugmentPipe
    cfg = load_config("2mm-fd16", batch_size=FLAGS.batch)
    reals = tf.random.uniform([FLAGS.batch, *cfg.img_shape, 1], -1.0, 1.0, seed=1)
    base = build_step(cfg, FLAGS.batch, FLAGS.seed)
    variants = {"plain": base}
    for p in FLAGS.p:  # the same networks: only the pipe differs
        variants[f"p={float(p):g}"] = base.__class__(
            cfg, base.strategy, base.G, base.D, base.G_ema, base.g_opt, base.d_opt, base.rng, base.pl_mean,
            FLAGS.batch, augment=AugmentPipe(FLAGS.pipeline, mode="fixed", p=float(p)))
    wall, cpu = time_steps({name: (train_step, reals) for name, train_step in variants.items()}, FLAGS.repeats)
    for record in step_records(wall, cpu, pipeline=FLAGS.pipeline, batch=FLAGS.batch,
                               img_shape=list(cfg.img_shape)):
        print(json.dumps(record), flush=True)


def snapshot(train_step, reals, extractors, real_msssim, mode, nimg, started, interval_stats):
    from tf3dstylegan.metrics import compute_metrics
    record = {"what": "train", "mode": mode, "pipeline": FLAGS.pipeline, "override": FLAGS.override,
              "seed": FLAGS.seed, "aug_p": FLAGS.aug_p, "target": FLAGS.target, "ada_kimg": FLAGS.ada_kimg,
              "kimg": nimg / 1000, "seconds": round(time.time() - started, 1),
              "p": float(train_step.augment.p.numpy()) if train_step.augment is not None else 0.0,
              "real_msssim": real_msssim}
    record.update({key: float(np.mean(values)) for key, values in interval_stats.items()})
    common = dict(num=len(reals), batch_size=8, seed=FLAGS.seed, reference=False, extractors=extractors)
    values = compute_metrics(train_step.G_ema, reals, metrics=FLAGS.metrics, **common)
    record.update({k: v for k, v in values.items() if k != "num"})
    # The trained G itself, without the average, on the same latents.
    record["msssim_G"] = compute_metrics(train_step.G, reals, metrics=["msssim"], **common)["msssim"]
    print(json.dumps(record), flush=True)
    return record


def train_comparison():
    """(b): the same training with each augmentation mode; metrics of G_ema per snapshot."""
    import tensorflow as tf
    from tf3dstylegan import load_config
    from tf3dstylegan.data import demo_dataset, make_dataset
    from tf3dstylegan.metrics import mmd, msssim
    from tf3dstylegan.metrics.runner import FeatureExtractors
    from tf3dstylegan.training.augment import build_augment
    from tf3dstylegan.config import parse_override
    overrides = dict(parse_override(text) for text in FLAGS.override)
    cfg = load_config("demo", batch_size=FLAGS.batch, **overrides)  # 2mm-fd16 at 20x24x28, G_ema half-life 1 kimg
    records = demo_dataset(voxel_size=8.0)
    reals = np.concatenate(list(make_dataset(records, 8, shuffle=False, repeat=False).as_numpy_iterator()))
    if reals.shape[1:4] != tuple(cfg.img_shape):
        raise ValueError(f"{records}: volumes {reals.shape[1:4]}, expected {cfg.img_shape}")
    real_msssim = float(np.mean(msssim.pairwise_ms_ssim(mmd.to_unit_range(reals))))
    extractors = FeatureExtractors(FLAGS.metrics)
    total, every = int(FLAGS.kimg * 1000), int(FLAGS.snap_kimg * 1000)
    for mode in FLAGS.modes:
        pipe = build_augment(mode, FLAGS.pipeline, p=FLAGS.aug_p, target=FLAGS.target, kimg=FLAGS.ada_kimg)
        train_step = build_step(cfg, FLAGS.batch, FLAGS.seed, augment=pipe)
        data = iter(make_dataset(records, FLAGS.batch, seed=FLAGS.seed, shuffle=True, repeat=True))
        nimg, step, next_snap, started = 0, 0, every, time.time()
        interval_stats = {}  # D's mean logits (and r_t) since the last snapshot
        while nimg < total:
            values = {k: float(v) for k, v in train_step(tf.constant(next(data)), step).items()}
            if not all(np.isfinite(v) for v in values.values()):
                raise RuntimeError(f"{mode}: non-finite losses at step {step}: {values}")
            for key in ("D/real", "D/fake", "aug/rt"):
                if key in values:
                    interval_stats.setdefault(key, []).append(values[key])
            step, nimg = step + 1, nimg + FLAGS.batch
            if nimg >= next_snap or nimg >= total:
                snapshot(train_step, reals, extractors, real_msssim, mode, nimg, started, interval_stats)
                next_snap, interval_stats = next_snap + every, {}
        if FLAGS.outdir:
            suffix = f"-{FLAGS.pipeline}-p{FLAGS.aug_p:g}" if mode == "fixed" else ""
            write_preview(train_step.G_ema, Path(FLAGS.outdir) / f"fakes-{mode}{suffix}.png")


def write_preview(G, path):
    import tensorflow as tf
    from tf3dstylegan.io import preview_grid, write_png
    z = tf.constant(np.random.RandomState(FLAGS.seed).randn(8, G.latent_size), tf.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, preview_grid(G(z, noise_mode="const").numpy(), 4))


def setting_name(record):
    """A training setting of (b), without its seed: 'none', 'fixed bc p=0.5', 'ada bc target=0.6 ada_kimg=10'
    ('?' for a field that older records lack)."""
    def field(key):
        return "?" if record.get(key) is None else f"{record[key]:g}"
    name = record["mode"]
    if name == "fixed":
        name += f" {record['pipeline']} p={field('aug_p')}"
    elif name == "ada":
        start = f" p0={field('aug_p')}" if record.get("aug_p") else ""
        name += f" {record['pipeline']} target={field('target')} ada_kimg={field('ada_kimg')}{start}"
    return " ".join([name, *record.get("override", [])])


SUMMARISED = ("msssim", "msssim_G", "p", "aug/rt", "D/real", "D/fake", "fid_sagittal", "fid_coronal", "fid_axial")


def summary():
    """(c): per setting and snapshot, the mean and sample standard deviation over seeds of (b)'s measures."""
    groups = {}
    for path in FLAGS.records:
        try:
            records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as error:
            raise SystemExit(f"--records {path}: not a file of JSON lines ({error})")
        for record in records:
            if record.get("what") == "train":
                groups.setdefault((setting_name(record), round(record["kimg"], 3)), []).append(record)
    for (setting, kimg), runs in sorted(groups.items()):
        out = {"what": "summary", "setting": setting, "kimg": kimg, "seeds": sorted(r.get("seed", 0) for r in runs),
               "real_msssim": runs[0]["real_msssim"]}
        for key in SUMMARISED:
            values = [r[key] for r in runs if key in r]
            if values:
                out[key] = [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None]
        print(json.dumps(out), flush=True)


def main(argv):
    {"step": step_time, "train": train_comparison, "summary": summary}[FLAGS.what]()


if __name__ == "__main__":
    app.run(main)
