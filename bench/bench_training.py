"""Training-loop throughput: `train()` on in-memory volumes (no input pipeline cost), sec/kimg per tick.

    python bench/bench_training.py --cfg demo --kimg 1 --batch 8 [--override key=value ...]
    python bench/bench_training.py --data demo_conditional --labels   # conditional step (--nolabels: same data)
Prints one JSON line: the median and each tick's sec/kimg after the first tick (which includes tracing), and
the wall time. It uses only `tf3dstylegan.training.train(config, data, outdir, kimg=, batch=, resume=, seed=,
log=)` (and `labels=` with --data), so the same script times an earlier checkout
(`PYTHONPATH=OLD_CHECKOUT python bench/bench_training.py`).
"""
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

flags.DEFINE_string("cfg", "demo", "Preset.")
flags.DEFINE_float("kimg", 1.0, "Thousands of volumes to train on.")
flags.DEFINE_integer("batch", 8, "Global batch.")
flags.DEFINE_enum("data", "memory", ["memory", "demo", "demo_conditional"],
                  "memory: 32 random volumes held in memory (no input pipeline cost); demo / demo_conditional: the "
                  "built-in demo records (conditional: with age and sex labels) through the input pipeline.")
flags.DEFINE_boolean("labels", None, "With --data demo_conditional: condition on its labels (--nolabels: ignore them).")
flags.DEFINE_multi_string("override", [], "Config field override key=value (repeatable).")
FLAGS = flags.FLAGS


def in_memory_data(volumes, batch):
    import tensorflow as tf

    def make(ctx, start_step):
        return tf.data.Dataset.from_tensor_slices(volumes).repeat().batch(ctx.get_per_replica_batch_size(batch))
    return make


def main(argv):
    import tf3dstylegan
    from tf3dstylegan.config import parse_override
    from tf3dstylegan.training import train
    cfg = tf3dstylegan.load_config(FLAGS.cfg, **dict(parse_override(t) for t in FLAGS.override))
    options = {}
    if FLAGS.data == "memory":
        volumes = np.random.default_rng(0).uniform(-1, 1, (32, *cfg.img_shape, cfg.num_channels)).astype(np.float32)
        data = in_memory_data(volumes, FLAGS.batch)
    else:
        from tf3dstylegan.data import demo_dataset
        data = demo_dataset(voxel_size=cfg.voxel_size, conditional=FLAGS.data == "demo_conditional")
        options["labels"] = FLAGS.labels
    with tempfile.TemporaryDirectory() as outdir:
        start = time.time()
        run = train(cfg, data, outdir, kimg=FLAGS.kimg, batch=FLAGS.batch, resume=None, seed=0,
                    log=lambda line: None, **options)
        wall = time.time() - start
        ticks = [json.loads(line) for line in (Path(run) / "stats.jsonl").read_text().splitlines()]
    per_tick = [t["sec_per_kimg"] for t in ticks[1:]]
    print(json.dumps({"code": tf3dstylegan.__file__, "cfg": cfg.name, "data": FLAGS.data, "labels": FLAGS.labels,
                      "kimg": FLAGS.kimg, "batch": FLAGS.batch,
                      "median_sec_per_kimg": statistics.median(per_tick) if per_tick else None,
                      "sec_per_kimg_per_tick": [round(v, 2) for v in per_tick], "wall_s": round(wall, 1)}))
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
