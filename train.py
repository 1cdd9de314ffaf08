"""Train 3D-StyleGAN: `python train.py --cfg 2mm-fd16 --kimg 1` (demo data), or with --data RECORDS_FOLDER.

Rerunning the same command continues the latest run of that config from its last checkpoint.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ info lines

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
CPU_BATCH = 4  # 2mm-fd16 at batch 4 needs ~7.5 GB on the CPU; batch 16 does not fit a 24 GB machine
flags.DEFINE_string("cfg", "2mm-fd16", "Config: a preset name (configs/*.json) or a JSON file.")
flags.DEFINE_string("data", None, "TFRecords folder (dataset_tool.py); default: the built-in demo dataset.")
flags.DEFINE_string("outdir", "runs", "Folder of the run folders (<id>-<cfg>).")
flags.DEFINE_float("kimg", None, "Train until D has seen this many thousand real volumes (default: cfg.total_kimg).")
flags.DEFINE_integer("batch", None, "Global minibatch, split over all replicas (default: cfg.batch_size; "
                     f"at most {CPU_BATCH} on a machine without GPUs).")
flags.DEFINE_integer("gpus", None, "Use only the first N GPUs (default: all visible).")
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multiworker"],
                  "tf.distribute strategy; auto: multi-worker when TF_CONFIG is set, mirrored over several GPUs.")
flags.DEFINE_string("resume", "auto", "auto (latest run of this cfg), none, a run folder, or a .pkl/.keras network.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Compute precision.")
flags.DEFINE_bool("jit", False, "Compile the training step with XLA.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, latents, data order).")
flags.DEFINE_integer("snap", 1, "Ticks between G_ema .keras snapshots and preview PNGs (checkpoints: every tick).")
flags.DEFINE_list("metrics", [], "Metrics at each snapshot, e.g. fid_slices,bmmd2,msssim,fid3d.")
flags.DEFINE_integer("metrics_num", 100, "Volumes per metric evaluation.")
flags.DEFINE_integer("keep", 3, "Checkpoints to keep.")
flags.DEFINE_bool("gradient_checkpointing", False, "Recompute block activations in the backward pass (less memory).")
flags.DEFINE_multi_string("override", [], "key=value for any config field, e.g. --override tick_kimg=1 (repeatable).")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    import tensorflow as tf
    from tf3dstylegan.config import load_config, parse_override
    from tf3dstylegan.training import NonFiniteLossError, train
    try:
        cfg = load_config(FLAGS.cfg, **dict(parse_override(text) for text in FLAGS.override))
        batch = FLAGS.batch
        if batch is None and not tf.config.list_physical_devices("GPU") and cfg.batch_size > CPU_BATCH:
            batch = CPU_BATCH
            print(f"no GPU: batch {batch} instead of {cfg.batch_size} (set --batch to change)")
        data = FLAGS.data
        if data is None:
            from tf3dstylegan.data import demo_dataset
            data = demo_dataset(voxel_size=cfg.voxel_size)
        metrics = _metrics_function(FLAGS.metrics, data, FLAGS.metrics_num)
        resume = None if FLAGS.resume == "none" else FLAGS.resume
        train(cfg, data, FLAGS.outdir, kimg=FLAGS.kimg, batch=batch, strategy=FLAGS.strategy, gpus=FLAGS.gpus,
              resume=resume, precision=FLAGS.precision, jit=FLAGS.jit, seed=FLAGS.seed, snap=FLAGS.snap,
              metrics=metrics, keep_checkpoints=FLAGS.keep, gradient_checkpointing=FLAGS.gradient_checkpointing)
    except (ValueError, OSError, NonFiniteLossError) as err:
        sys.exit(f"train.py: {err}")


def _metrics_function(names, data, num):
    """None, or G_ema -> {metric: value} on `num` generated volumes against `data`."""
    if not names:
        return None
    from tf3dstylegan.metrics.runner import compute_metrics

    def evaluate(G):
        results = compute_metrics(G, data, names, num=num, reference=False)
        return {key: value for key, value in results.items() if key != "num"}
    return evaluate


if __name__ == "__main__":
    app.run(main)
