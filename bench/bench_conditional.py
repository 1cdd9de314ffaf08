"""Conditioning: the conditional training step's cost, and whether a conditional model learns the demo's age effect.

    python bench/bench_conditional.py --what step --cfg 2mm-fd16 --batch 2    # (a) step time, plain vs conditional
    python bench/bench_conditional.py --what effect --kimg 20                 # (b) train, then the age slope
(a) builds the training state twice as `train()` does, unconditional and conditional (age and sex of the
conditional demo data: 3 label values, fakes' labels drawn from its rows), and times their steps interleaved in
one process so that load on the machine hits both alike; medians of wall and of this process's CPU seconds,
steps without lazy regularisation. (b) trains the demo preset (the 2mm-fd16 networks at 20x24x28) on the
conditional demo data at 8 mm with `train()`, then for each G_ema snapshot prints the least-squares slope of
ventricle volume against the requested age over --latents latents x 5 ages, against the slope in --real_subjects
real demo subjects (`tf3dstylegan.metrics.effects.covariate_effect`), both with 95 % confidence intervals.
One JSON line per measurement.
"""
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from step_timing import step_records, time_steps

flags.DEFINE_enum("what", "step", ["step", "effect"], "(a) step time or (b) the trained model's age effect.")
flags.DEFINE_string("cfg", "2mm-fd16", "(a) preset of the networks.")
flags.DEFINE_integer("batch", 2, "(a) global batch; (b) uses 8.")
flags.DEFINE_integer("repeats", 5, "(a) timed steps per variant after one warm-up step.")
flags.DEFINE_float("kimg", 20.0, "(b) thousands of real volumes to train on.")
flags.DEFINE_integer("latents", 64, "(b) latents per snapshot, each generated at 5 ages.")
flags.DEFINE_integer("real_subjects", 640, "(b) real demo subjects for the real slope.")
flags.DEFINE_string("outdir", None, "(b) keep the run folder here (default: a temporary folder).")
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS


def step_time():
    """(a): seconds per training step of the same preset, unconditional and conditional."""
    import tensorflow as tf
    from tf3dstylegan import load_config
    from tf3dstylegan.data import demo_dataset
    from tf3dstylegan.data.labels import read_labels
    from tf3dstylegan.backend.tensorflow.state import build_state
    _, table = read_labels(demo_dataset(voxel_size=8.0, conditional=True))  # [32, 3]: age, sex F, sex M
    plain = load_config(FLAGS.cfg, batch_size=FLAGS.batch)
    conditional = plain.replace(label_size=int(table.shape[1]))
    reals = tf.random.uniform([FLAGS.batch, *plain.img_shape, plain.num_channels], -1.0, 1.0, seed=1)
    labels = tf.constant(table[:FLAGS.batch], tf.float32)
    strategy = tf.distribute.get_strategy()
    variants = {"plain": (build_state(plain, strategy, FLAGS.batch, FLAGS.seed).train_step, reals),
                "conditional": (build_state(conditional, strategy, FLAGS.batch, FLAGS.seed,
                                            label_table=table).train_step, (reals, labels))}
    wall, cpu = time_steps(variants, FLAGS.repeats)
    for record in step_records(wall, cpu, cfg=FLAGS.cfg, batch=FLAGS.batch, img_shape=list(plain.img_shape)):
        print(json.dumps(record), flush=True)


def age_effect():
    """(b): train a conditional demo model, then the age slope of each snapshot against the real one."""
    from tf3dstylegan import load_network
    from tf3dstylegan.data import demo_dataset
    from tf3dstylegan.metrics.effects import covariate_effect, parse_effect
    from tf3dstylegan.metrics.labelled import LabelledData
    from tf3dstylegan.training import train
    effect = parse_effect("age")
    reals = LabelledData.open(demo_dataset(voxel_size=8.0, num_subjects=FLAGS.real_subjects, conditional=True))
    with tempfile.TemporaryDirectory() as scratch:
        started = time.time()
        run = Path(train("demo", demo_dataset(voxel_size=8.0, conditional=True), FLAGS.outdir or scratch,
                         kimg=FLAGS.kimg, batch=8, resume=None, seed=FLAGS.seed, labels=True, snap=10,
                         log=lambda line: None))
        train_seconds = time.time() - started
        for snapshot in sorted(run.glob("network-snapshot-*.keras")):
            G = load_network(snapshot).G_ema
            result = covariate_effect(G, reals, effect, num=5 * FLAGS.latents, seed=FLAGS.seed)
            print(json.dumps({"what": "effect", "snapshot": snapshot.name, "train_seconds": round(train_seconds),
                              **{k: v for k, v in result.items() if not isinstance(v, np.ndarray)}}), flush=True)


def main(argv):
    if FLAGS.what == "step":
        step_time()
    else:
        age_effect()


if __name__ == "__main__":
    app.run(main)
