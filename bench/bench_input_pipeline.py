"""Input pipeline throughput (volumes/s) at 2 mm and 1 mm, beside what training consumes.

  python bench/bench_input_pipeline.py [--pipeline tf|numpy] [--cache_mb 0] [--step_time 0.5] [--batch_size 16]
      [--out bench.json]

Reads the demo dataset (built and cached on first use) through tf.data's make_dataset or NumPy's make_batches
with shuffling and mirror augment, as training does; --cache_mb 0 reads every volume from its file each time
(the page cache holds them), the default keeps datasets of up to 1 GB in memory. A training step of
`step_time` seconds on `batch_size` volumes consumes batch_size / step_time volumes/s; the pipeline keeps up
when its rate is higher.
"""
import json
import os
import platform
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_enum("pipeline", "tf", ["tf", "numpy"], "tf: data.make_dataset (tf.data); numpy: "
                  "data.batches.make_batches (no TensorFlow).")
flags.DEFINE_integer("cache_mb", None, "Keep datasets up to this size in memory (default: the pipeline's, 1024).")
flags.DEFINE_list("voxel_sizes", ["2", "1"], "Demo grids to measure (mm).")
flags.DEFINE_integer("batch_size", 16, "Global batch size (the paper's presets use 16).")
flags.DEFINE_float("step_time", None, "Seconds per training step, to print the volumes/s training needs.")
flags.DEFINE_integer("num_batches", 20, "Batches timed after warm-up.")
flags.DEFINE_integer("subjects_1mm", 16, "Demo subjects at 1 mm (27.5 MB each); 2 mm uses the default count.")
flags.DEFINE_string("cache_dir", None, "Demo cache folder (default $TF3DSTYLEGAN_CACHE or ~/.cache/tf3dstylegan).")
flags.DEFINE_string("out", None, "Also write the JSON report here.")
FLAGS = flags.FLAGS


def batches(path, batch_size):
    """An iterator of training batches of the chosen pipeline."""
    options = {} if FLAGS.cache_mb is None else {"cache_mb": FLAGS.cache_mb}
    if FLAGS.pipeline == "numpy":
        from tf3dstylegan.data.batches import make_batches  # pylint: disable=import-outside-toplevel
        return make_batches(path, batch_size, mirror_augment=True, **options)
    from tf3dstylegan.data import make_dataset  # pylint: disable=import-outside-toplevel
    return iter(make_dataset(path, batch_size, mirror_augment=True, **options))


def measure(path, batch_size, num_batches, warmup=3):
    """(volumes/s, seconds per batch) of the pipeline over a records folder."""
    iterator = batches(path, batch_size)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)  # a materialised tensor, as a training step receives it
    seconds = (time.perf_counter() - start) / num_batches
    if hasattr(iterator, "close"):  # make_batches' reader thread
        iterator.close()
    return batch_size / seconds, seconds


def main(_):
    from tf3dstylegan.data import demo  # pylint: disable=import-outside-toplevel

    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "pipeline": FLAGS.pipeline,
              "cache_mb": FLAGS.cache_mb, "batch_size": FLAGS.batch_size,
              "step_time_s": FLAGS.step_time, "results": []}
    if FLAGS.step_time:
        report["training_needs_volumes_per_s"] = FLAGS.batch_size / FLAGS.step_time
    for voxel_size in (float(v) for v in FLAGS.voxel_sizes):
        subjects = FLAGS.subjects_1mm if voxel_size < 2 else demo.DEFAULT_SUBJECTS
        start = time.perf_counter()
        path = demo.demo_dataset(voxel_size, subjects, cache_dir=FLAGS.cache_dir)
        prepare_s = time.perf_counter() - start
        rate, batch_s = measure(path, FLAGS.batch_size, FLAGS.num_batches)
        result = {"voxel_size_mm": voxel_size, "img_shape": list(demo.demo_shape(voxel_size)),
                  "volumes_per_s": round(rate, 1), "ms_per_batch": round(batch_s * 1e3, 1),
                  "demo_prepare_s": round(prepare_s, 1)}
        if FLAGS.step_time:
            result["headroom"] = round(rate / report["training_needs_volumes_per_s"], 1)
        report["results"].append(result)
        needs = (f"; training at {FLAGS.step_time} s/step needs {report['training_needs_volumes_per_s']:.1f}"
                 if FLAGS.step_time else "; pass --step_time to compare with training")
        print(f"{voxel_size:g} mm {tuple(result['img_shape'])}: {rate:.1f} volumes/s "
              f"({batch_s * 1e3:.1f} ms per batch of {FLAGS.batch_size}){needs}", file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if FLAGS.out:
        Path(FLAGS.out).write_text(text + "\n")


if __name__ == "__main__":
    app.run(main)
