"""Adaptive discriminator augmentation and the demo's defaults: the cost of the augmented step, training runs over
seeds, and their summary.

    python bench/bench_ada.py --what step --batch 2 --p 0,0.5,1              # (a) step time, plain vs augmented
    python bench/bench_ada.py --what train --seed 1 >> runs.jsonl             # (b) `python train.py --seed 1`
    python bench/bench_ada.py --what train --aug ada --pipeline bgc --target 0.6 --ada_kimg 10 --seed 1
    python bench/bench_ada.py --what train --override d_loss=logistic_r1 --override d_gamma=1 --subjects 128
    python bench/bench_ada.py --what summary --records runs.jsonl            # (c) mean, sd over seeds of (b)
    python bench/bench_ada.py --what repeat --network RUN/network-snapshot-000010.000.keras  # (d) slice FID's own noise
(a) times TrainStep at 2mm-fd16 (80x96x112) without a pipe and with a fixed-p pipe per --p, interleaved in
one process so that load on the machine hits all alike (medians of wall and of this process's CPU seconds);
steps without lazy regularisation (the regularisers run every 16 steps; bench/step_timing.py). (b) trains the
demo preset through `tf3dstylegan.training.train` (what `python train.py` runs; config fields by --override,
the augmentation by --aug etc., on the demo data of --subjects subjects) into --runs, then measures each
--eval_kimg snapshot: the training log's MS-SSIM of generated pairs and of real pairs (16 pairs each), slice FID
and MS-SSIM of --eval_num generated volumes against as many held-out demo subjects (demo seed 1, not trained
on), the stripe measure (high_frequency_fraction of 64 generated volumes over that of 64 held-out reals), p, and
the means over the run's second half of D's logits (D/real, D/fake) and r_t. One JSON line per snapshot;
--outdir also writes its preview PNG. (c) reads (b)'s lines of several runs and prints per setting and snapshot
the mean and sample standard deviation over seeds of each measure, and how many seeds end with generated pairs
within 0.01 of the real pairs' MS-SSIM. (d) measures one snapshot's slice FID as (b) does, once per pair of
--latent_seeds (the generated volumes) and --heldout_seeds (the held-out demo subjects: a new set per seed), and
the mean and sample standard deviation over the pairs: how far slice FID moves with the samples alone, to hold
against its spread over training seeds.
"""
import json
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from spectra import high_frequency_fraction
from step_timing import step_records, time_steps

flags.DEFINE_enum("what", "step", ["step", "train", "summary", "repeat"],
                  "(a) step time, (b) one training run and its measurements, (c) summary of (b)'s records, (d) "
                  "one snapshot's slice FID over new samples.")
flags.DEFINE_integer("batch", None, "Global batch size: (a) default 2; (b) default the demo preset's.")
flags.DEFINE_string("pipeline", None, "Augmentation pipeline (tf3dstylegan.training.augment; default: train's).")
flags.DEFINE_list("p", ["0", "0.5", "1"], "(a) fixed augmentation probabilities to time.")
flags.DEFINE_integer("repeats", 3, "(a) timed steps per variant after one warm-up step.")
flags.DEFINE_enum("aug", None, ["auto", "ada", "fixed", "none"], "(b) augmentation mode (train's --aug; default: "
                  "train's).")
flags.DEFINE_float("kimg", 10.0, "(b) thousands of real volumes shown.")
flags.DEFINE_float("target", None, "(b) ADA target for r_t (default: train's).")
flags.DEFINE_float("aug_p", None, "(b) p of mode 'fixed' (required with it); the start of mode 'ada'.")
flags.DEFINE_float("ada_kimg", None, "(b) kimg for p to move by 1 (default: the preset's).")
flags.DEFINE_multi_string("override", [], "(b) config field override key=value, e.g. d_loss=logistic_r1.")
flags.DEFINE_integer("subjects", 32, "(b) demo subjects to train on (8 mm).")
flags.DEFINE_list("eval_kimg", [], "(b) snapshots to measure (default: the last).")
flags.DEFINE_integer("eval_num", 256, "(b) generated volumes and held-out subjects per measurement.")
flags.DEFINE_string("resample", "antialiased", "(b) a label for the geometric resampling the code in use has.")
flags.DEFINE_string("runs", "bench-runs", "(b) folder of the run folders (and their logs).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("outdir", None, "(b) write each measured snapshot's preview PNG here.")
flags.DEFINE_list("records", [], "(c) files of (b)'s JSON lines to summarise.")
flags.DEFINE_string("network", None, "(d) the network to measure (a .keras snapshot or a run folder: G_ema).")
flags.DEFINE_list("latent_seeds", ["0", "1", "2"], "(d) seeds of the generated volumes.")
flags.DEFINE_list("heldout_seeds", ["1", "2"], "(d) demo seeds of the held-out subjects (the demo trains on seed 0).")
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
    from tf3dstylegan.training.options import TrainingOptions
    batch = FLAGS.batch or 2
    pipeline = FLAGS.pipeline or TrainingOptions().augpipe
    cfg = load_config("2mm-fd16", batch_size=batch)
    reals = tf.random.uniform([batch, *cfg.img_shape, 1], -1.0, 1.0, seed=1)
    base = build_step(cfg, batch, FLAGS.seed)
    variants = {"plain": base}
    for p in FLAGS.p:  # the same networks: only the pipe differs
        variants[f"p={float(p):g}"] = base.__class__(
            cfg, base.strategy, base.G, base.D, base.G_ema, base.g_opt, base.d_opt, base.rng, base.pl_mean,
            batch, augment=AugmentPipe(pipeline, mode="fixed", p=float(p)))
    wall, cpu = time_steps({name: (train_step, reals) for name, train_step in variants.items()}, FLAGS.repeats)
    for record in step_records(wall, cpu, pipeline=pipeline, batch=batch,
                               img_shape=list(cfg.img_shape)):
        print(json.dumps(record), flush=True)


def train_run():
    """(b): one training run of the demo preset through `train()` (what `python train.py` runs, with these
    options), then each --eval_kimg snapshot measured against held-out demo subjects."""
    from tf3dstylegan import load_config
    from tf3dstylegan.config import parse_override
    from tf3dstylegan.data import demo_dataset
    from tf3dstylegan.training import train
    overrides = dict(parse_override(text) for text in FLAGS.override)
    cfg = load_config("demo", **overrides)
    data = demo_dataset(voxel_size=cfg.voxel_size, num_subjects=FLAGS.subjects)
    name = setting_name(setting_fields())
    run_root = Path(FLAGS.runs) / f"{name.replace(' ', '_').replace('=', '')}-n{FLAGS.subjects}-s{FLAGS.seed}"
    run_root.parent.mkdir(parents=True, exist_ok=True)
    given = dict(aug=FLAGS.aug, augpipe=FLAGS.pipeline, aug_target=FLAGS.target, aug_p=FLAGS.aug_p,
                 ada_kimg=FLAGS.ada_kimg)
    options = dict(kimg=FLAGS.kimg, seed=FLAGS.seed, resume="none", **{k: v for k, v in given.items() if v is not None})
    if FLAGS.batch is not None:
        options["batch"] = FLAGS.batch
    started = time.time()
    with open(run_root.with_suffix(".log"), "w") as log_file:
        run = train(cfg, data, run_root, log=lambda line: print(line, file=log_file, flush=True), **options)
    seconds = time.time() - started
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    evaluate_snapshots(run, stats, seconds)


def setting_fields():
    return {"aug": FLAGS.aug, "pipeline": FLAGS.pipeline, "aug_p": FLAGS.aug_p, "target": FLAGS.target,
            "ada_kimg": FLAGS.ada_kimg, "override": FLAGS.override, "resample": FLAGS.resample,
            "batch": FLAGS.batch}


def slice_fid(G, heldout, seed, extractors):
    """Slice FID (per plane and their mean) and MS-SSIM of --eval_num volumes of G (latents of `seed`) against
    the held-out demo folder `heldout`."""
    from tf3dstylegan.metrics import compute_metrics
    values = compute_metrics(G, heldout, metrics=["fid_slices", "msssim"], num=FLAGS.eval_num, batch_size=8,
                             seed=seed, reference=False, extractors=extractors, cache_reals=True)
    values = {k: v for k, v in values.items() if k != "num"}
    values["fid_slices_mean"] = float(np.mean([values[f"fid_{p}"] for p in ("sagittal", "coronal", "axial")]))
    return values


def repeat_measure():
    """(d): one line per (latent seed, held-out seed), then their mean and sample standard deviation."""
    from tf3dstylegan import load_network
    from tf3dstylegan.data import demo_dataset
    from tf3dstylegan.metrics.extractors import FeatureExtractors
    if not FLAGS.network:
        raise SystemExit("--network: the snapshot to measure is required with --what repeat")
    G = load_network(FLAGS.network).G_ema
    extractors = FeatureExtractors(["fid_slices"])
    means = []
    for heldout_seed in (int(s) for s in FLAGS.heldout_seeds):
        heldout = demo_dataset(voxel_size=8.0, num_subjects=FLAGS.eval_num, seed=heldout_seed)
        for latent_seed in (int(s) for s in FLAGS.latent_seeds):
            values = slice_fid(G, heldout, latent_seed, extractors)
            means.append(values["fid_slices_mean"])
            print(json.dumps({"what": "repeat", "network": FLAGS.network, "latent_seed": latent_seed,
                              "heldout_seed": heldout_seed, **values}), flush=True)
    print(json.dumps({"what": "repeat_summary", "network": FLAGS.network, "measurements": len(means),
                      "fid_slices_mean": [round(float(np.mean(means)), 1),
                                          round(float(np.std(means, ddof=1)), 1) if len(means) > 1 else None],
                      "range": [round(min(means), 1), round(max(means), 1)]}), flush=True)


def evaluate_snapshots(run, stats, seconds):
    """One JSON line per --eval_kimg snapshot: the training log's diversity, slice FID and MS-SSIM of --eval_num
    generated volumes against as many held-out demo subjects (demo seed 1), the stripe measure, D's logits."""
    import keras
    from tf3dstylegan.data import demo_dataset, make_dataset
    from tf3dstylegan.metrics.extractors import FeatureExtractors
    from tf3dstylegan.training.loop import snapshot_name
    heldout = demo_dataset(voxel_size=8.0, num_subjects=FLAGS.eval_num, seed=1)
    reals = np.concatenate(list(make_dataset(heldout, 8, shuffle=False, repeat=False).as_numpy_iterator()))
    extractors = FeatureExtractors(["fid_slices"])
    for kimg in [float(k) for k in FLAGS.eval_kimg] or [FLAGS.kimg]:
        nimg = int(round(kimg * 1000))
        G = keras.models.load_model(run / f"network-snapshot-{snapshot_name(nimg)}.keras", compile=False)
        record = {"what": "train", **setting_fields(), "subjects": FLAGS.subjects, "seed": FLAGS.seed,
                  "kimg": kimg, "train_seconds": round(seconds, 1), "run": str(run)}
        at = [r for r in stats if r["nimg"] == nimg][-1]
        record.update({k: at[k] for k in ("diversity/msssim_fakes", "diversity/msssim_reals", "aug/p") if k in at})
        later = [r for r in stats if r["nimg"] > nimg / 2 and r["nimg"] <= nimg]  # the second half of the run
        for key in ("D/real", "D/fake", "aug/rt"):
            values = [r[key] for r in later if key in r]
            if values:
                record[key] = float(np.mean(values))
        record.update(slice_fid(G, heldout, FLAGS.seed, extractors))
        z = np.random.RandomState(FLAGS.seed).randn(64, G.latent_size).astype(np.float32)
        fakes = np.concatenate([np.asarray(G(z[i:i + 8], noise_mode="const")) for i in range(0, 64, 8)])
        record["stripes"] = high_frequency_fraction(fakes) / high_frequency_fraction(reals[:64])
        print(json.dumps(record), flush=True)
        if FLAGS.outdir:
            write_preview(G, Path(FLAGS.outdir) / f"{Path(record['run']).name}-{snapshot_name(nimg)}.png")


def write_preview(G, path):
    from tf3dstylegan.io import preview_grid, write_png
    z = np.random.RandomState(FLAGS.seed).randn(8, G.latent_size).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, preview_grid(np.asarray(G(z, noise_mode="const")), 4))


def setting_name(record):
    """A training setting of (b), without its seed: 'none', 'fixed bc p=0.5', 'ada bc target=0.6 ada_kimg=10',
    'defaults' (train's own augmentation options), then the overrides, the batch and the resampling when not the
    default. Options left to train show its defaults (ada_kimg: 'preset')."""
    from tf3dstylegan.training.options import TrainingOptions
    defaults = TrainingOptions()
    given = {"pipeline": record.get("pipeline") or defaults.augpipe,
             "target": f"{record.get('target') or defaults.aug_target:g}",
             "aug_p": "?" if record.get("aug_p") is None else f"{record['aug_p']:g}",
             "ada_kimg": "preset" if record.get("ada_kimg") is None else f"{record['ada_kimg']:g}"}
    name = record["aug"] or "defaults"
    if name == "fixed":
        name += f" {given['pipeline']} p={given['aug_p']}"
    elif name == "ada":
        start = f" p0={given['aug_p']}" if record.get("aug_p") else ""
        name += f" {given['pipeline']} target={given['target']} ada_kimg={given['ada_kimg']}{start}"
    extra = [f"batch={record['batch']}"] if record.get("batch") else []
    if name not in ("none", "defaults") and "g" in given["pipeline"] and record.get("resample") != "antialiased":
        extra.append(f"resample={record.get('resample')}")
    return " ".join([name, *record.get("override", []), *extra])


SUMMARISED = ("diversity/msssim_fakes", "msssim", "fid_slices_mean", "fid_sagittal", "fid_coronal", "fid_axial",
              "stripes", "aug/p", "aug/rt", "D/real", "D/fake", "train_seconds")
ACCEPTANCE = 0.01  # generated pairs' MS-SSIM within this of the real pairs'


def summary():
    """(c): per setting, data size and snapshot, the mean and sample standard deviation over seeds of (b)'s
    measures, and the seeds whose generated pairs' MS-SSIM (training log) is within ACCEPTANCE of the reals'."""
    groups = {}
    for path in FLAGS.records:
        try:
            records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as error:
            raise SystemExit(f"--records {path}: not a file of JSON lines ({error})")
        for record in records:
            if record.get("what") == "train":
                key = (setting_name(record), record["subjects"], round(record["kimg"], 3))
                groups.setdefault(key, []).append(record)
    for (setting, subjects, kimg), runs in sorted(groups.items()):
        out = {"what": "summary", "setting": setting, "subjects": subjects, "kimg": kimg,
               "seeds": sorted(r["seed"] for r in runs),
               "msssim_reals": runs[0].get("diversity/msssim_reals")}
        for key in SUMMARISED:
            values = [r[key] for r in runs if key in r]
            if values:
                out[key] = [round(float(np.mean(values)), 4),
                            round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None]
        gaps = [r["diversity/msssim_fakes"] - r["diversity/msssim_reals"] for r in runs
                if "diversity/msssim_reals" in r]
        out["gap_max"] = round(float(np.max(np.abs(gaps))), 4) if gaps else None
        out["seeds_within"] = f"{sum(abs(g) <= ACCEPTANCE for g in gaps)}/{len(gaps)}"
        print(json.dumps(out), flush=True)


def main(argv):
    {"step": step_time, "train": train_run, "summary": summary, "repeat": repeat_measure}[FLAGS.what]()


if __name__ == "__main__":
    app.run(main)
