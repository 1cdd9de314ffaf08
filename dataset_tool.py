"""Make and inspect 3D-StyleGAN datasets (records in the original's format, spec §6).

  python dataset_tool.py create-from-images3d OUTDIR INDIR [--base-size 5 6 7] [--voxel-size 2 --shape 80 96 112]
        [--normalize none|minmax|percentile] [--shards N] [--workers N] [--skip-bad] [--shuffle 0|1] [--lods]
  python dataset_tool.py split FOLDER [--valid-fraction 0.1] [--seed 0] [--copy]
  python dataset_tool.py demo [--voxel-size 2] [--num-subjects 32] [--seed 0] [--cache-dir DIR]
  python dataset_tool.py info RECORDS_DIR
"""
import os
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the output

flags.DEFINE_list("base_size", ["5", "6", "7"], "Base block size b0,b1,b2: volumes must be base_size * 2**k.")
flags.DEFINE_float("voxel_size", None, "Resample every volume onto an RAS grid of this voxel size (mm); needs --shape.")
flags.DEFINE_list("shape", None, "Target grid X,Y,Z for resampling (with --voxel-size).")
flags.DEFINE_enum("normalize", "none", ["none", "minmax", "percentile"],
                  "Intensity to [0, 1]: none clips as the original; minmax; percentile 0.5..99.5 (foreground).")
flags.DEFINE_integer("shards", 1, "Record files per dataset (1 = readable by the original code too).")
flags.DEFINE_integer("workers", 1, "Processes that read and resample volumes.")
flags.DEFINE_boolean("skip_bad", False, "Report and skip bad input files instead of stopping.")
flags.DEFINE_boolean("shuffle", True, "Store volumes in the original's shuffled order (RandomState(123)).")
flags.DEFINE_boolean("lods", False, "Also write the lower levels of detail (-r05 .. -r02) like the original.")
flags.DEFINE_float("valid_fraction", 0.1, "split: fraction of files for validation.")
flags.DEFINE_integer("seed", 0, "split / demo: random seed.")
flags.DEFINE_boolean("copy", False, "split: copy files instead of absolute symlinks.")
flags.DEFINE_integer("num_subjects", 32, "demo: number of synthetic subjects.")
flags.DEFINE_string("cache_dir", None, "demo: cache folder (default $TF3DSTYLEGAN_CACHE or ~/.cache/tf3dstylegan).")
FLAGS = flags.FLAGS

LIST_FLAGS = ("base_size", "shape")
COMMANDS = {"create-from-images3d": 2, "create_from_images3d": 2, "split": 1, "demo": 0, "info": 1}


def normalize_argv(argv):
    """Accept `--base-size 5 6 7`, `--voxel-size 2` and `--shuffle 0|1` besides absl's own syntax."""
    out, i = [argv[0]], 1
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("--") or token == "--":
            out.append(token)
            continue
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if not eq and name in LIST_FLAGS:
            values = []
            while i < len(argv) and len(values) < 3 and argv[i].lstrip("-").replace(".", "", 1).isdigit():
                values.append(argv[i])
                i += 1
            value, eq = ",".join(values), "=" if values else ""
        elif not eq and name == "shuffle" and i < len(argv) and argv[i] in ("0", "1"):
            name = "shuffle" if argv[i] == "1" else "noshuffle"
            i += 1
        out.append(f"--{name}{eq}{value}")
    return out


def int_list(name, values):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        sys.exit(f"--{name.replace('_', '-')}: expected integers, got {','.join(values)}")


_BAR = {"open": False}


def progress_bar(done, total, width=30):
    _BAR["open"] = done < total
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} volumes")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def print_summary(summary):
    print(f"wrote {summary['num_volumes']} volumes of shape {tuple(summary['img_shape'])} "
          f"to {', '.join(summary['files'])}")
    low, high = summary["input_range"]
    print(f"input values {low:.4g} .. {high:.4g}; stored values {summary['value_range'][0]:.4g} .. "
          f"{summary['value_range'][1]:.4g} (normalize={summary['normalize']})")
    if summary["num_clipped"]:
        print(f"{summary['num_clipped']} volumes had values outside [0, 1] and were clipped "
              "(consider --normalize percentile)")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} bad files:")
        for line in summary["skipped"]:
            print(f"  {line}")


def run(command, args):
    from tf3dstylegan import data  # pylint: disable=import-outside-toplevel; keeps --help fast

    if command in ("create-from-images3d", "create_from_images3d"):
        shape = int_list("shape", FLAGS.shape) if FLAGS.shape else None
        summary = data.create_from_images3d(
            args[0], args[1], base_size=int_list("base_size", FLAGS.base_size), voxel_size=FLAGS.voxel_size,
            img_shape=shape, normalize=FLAGS.normalize, shards=FLAGS.shards, workers=FLAGS.workers,
            skip_bad=FLAGS.skip_bad, shuffle=FLAGS.shuffle, lods=FLAGS.lods, progress=progress_bar)
        print_summary(summary)
    elif command == "split":
        train, valid = data.split_folder(args[0], valid_fraction=FLAGS.valid_fraction, seed=FLAGS.seed,
                                         copy=FLAGS.copy)
        print(f"{len(train)} training and {len(valid)} validation files: {args[0].rstrip('/')}_train, "
              f"{args[0].rstrip('/')}_valid")
    elif command == "demo":
        print(data.demo_dataset(FLAGS.voxel_size or 2.0, FLAGS.num_subjects, FLAGS.seed, FLAGS.cache_dir))
    else:
        info = data.dataset_info(args[0])
        print(f"{info.num_volumes} volumes of shape {info.img_shape} x {info.num_channels} channel(s) "
              f"in {len(info.files)} file(s): {', '.join(str(f) for f in info.files)}")


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        sys.exit(f"usage: dataset_tool.py {{{'|'.join(COMMANDS)}}} ...\n{__doc__}")
    command, args = argv[1], argv[2:]
    if len(args) != COMMANDS[command]:
        sys.exit(f"{command}: expected {COMMANDS[command]} positional argument(s), got {args}")
    try:
        run(command, args)
    except (ValueError, RuntimeError, OSError) as err:  # DataError is a ValueError: one line, exit 1
        sys.exit(("\n" if _BAR["open"] else "") + " ".join(str(err).split()))
    except KeyboardInterrupt:
        sys.exit(("\n" if _BAR["open"] else "") + "interrupted (no partial record file was kept)")


if __name__ == "__main__":
    app.run(main, argv=normalize_argv(sys.argv))
