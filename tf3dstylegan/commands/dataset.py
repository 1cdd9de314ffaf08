"""Make, split, inspect and verify 3D-StyleGAN datasets (TFRecords in the original's format).

  {prog} create-from-images3d OUTDIR INDIR [--base_size 5,6,7] [--voxel_size 2 --shape 80,96,112]
        [--normalize none|minmax|percentile] [--shards N] [--workers N] [--skip_bad] [--noshuffle] [--lods]
        [--labels participants.tsv [--label_columns age,sex] [--categorical sex]] [--max_voxels N]
  {prog} split FOLDER [--valid_fraction 0.1] [--seed 0] [--copy]
  {prog} info RECORDS_DIR [--verify [--verify_sample 64]]
  {prog} demo [--voxel_size 2] [--num_subjects 32] [--seed 0] [--cache_dir DIR] [--labels]
  {prog} prepare OUTDIR INDIR [--voxel_size 2|1] [--shape X,Y,Z] [--workers N] [--skip_bad] [--records]
        [--no_bias_correction] [--skull_strip deepbet|none] [--register affine|none] [--labels participants.tsv]

prepare turns raw T1 scans (.nii, .nii.gz, .mgz, .npz) and FreeSurfer subject folders into brain-only,
bias-corrected volumes on the paper's grid in MNI152 space (N4, deepbet skull stripping, affine registration
to the MNI152 template, percentile normalisation), with a QC picture per subject and qc/prepare_report.tsv;
a rerun skips finished subjects; --records also writes records to OUTDIR/records (with --labels etc.).

--labels takes a CSV/TSV covariate table (BIDS participants.tsv style: an id column, `participant_id` or
the first, then one column per covariate). A file matches the row whose id is its name without suffix,
or a `_`-separated part of it (sub-01 matches sub-01_T1w.nii.gz). Numeric columns are standardised,
others (and --categorical ones, optionally NAME=A|B|C) one-hot; the encoding goes to labels.json and
the labels, in record order, to <name>-rxx.labels (the original's file). `demo --labels` builds the
conditional demo data (age and sex with known effects on anatomy). The original's spellings
`--base_size 5 6 7` and `--shuffle 0|1` work too.
"""

from absl import flags

from tf3dstylegan.cli import CommandError, flag_error

SUBCOMMANDS = {"create-from-images3d": 2, "split": 1, "info": 1, "demo": 0, "prepare": 2}
LIST_FLAGS = ("base_size", "shape")


def define_flags(fv):
    flags.DEFINE_list("base_size", ["5", "6", "7"], "Base block size b0,b1,b2: volumes must be base_size * 2**k.",
                      flag_values=fv)
    flags.DEFINE_float("voxel_size", None, "Resample every volume onto an RAS grid of this voxel size (mm); "
                       "needs --shape. demo, prepare: voxel size of the data (default 2).", flag_values=fv)
    flags.DEFINE_list("shape", None, "Target grid X,Y,Z for resampling (with --voxel_size).", flag_values=fv)
    flags.DEFINE_enum("normalize", "none", ["none", "minmax", "percentile"],
                      "Intensity to [0, 1]: none clips as the original; minmax; percentile 0.5..99.5 (foreground).",
                      flag_values=fv)
    flags.DEFINE_integer("shards", 1, "Record files per dataset (1 = readable by the original code too).",
                         flag_values=fv)
    flags.DEFINE_integer("workers", 1, "Processes that read and resample volumes.", flag_values=fv)
    flags.DEFINE_boolean("skip_bad", False, "Report and skip bad input files instead of stopping.", flag_values=fv)
    flags.DEFINE_boolean("shuffle", True, "Store volumes in the original's shuffled order (RandomState(123)).",
                         flag_values=fv)
    flags.DEFINE_boolean("lods", False, "Also write the lower levels of detail (-r05 .. -r02) like the original.",
                         flag_values=fv)
    flags.DEFINE_string("labels", None, "Covariate table (CSV/TSV) of the input files; demo: 'demo' for the "
                        "conditional demo data.", flag_values=fv)
    flags.DEFINE_list("label_columns", None, "Covariate columns to use (default: all but the id).", flag_values=fv)
    flags.DEFINE_list("categorical", None, "Columns to one-hot even if numeric; NAME=A|B|C fixes the categories.",
                      flag_values=fv)
    flags.DEFINE_integer("max_voxels", 2 ** 26, "Refuse input files whose header claims more voxels (the default "
                         "converts in under 2 GB).",
                         flag_values=fv)
    flags.DEFINE_float("valid_fraction", 0.1, "split: fraction of files for validation.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "split / demo: random seed.", flag_values=fv)
    flags.DEFINE_boolean("copy", False, "split: copy files instead of absolute symlinks.", flag_values=fv)
    flags.DEFINE_integer("num_subjects", 32, "demo: number of synthetic subjects.", flag_values=fv)
    flags.DEFINE_string("cache_dir", None, "demo: cache folder (default $TF3DSTYLEGAN_CACHE or "
                        "~/.cache/tf3dstylegan).", flag_values=fv)
    flags.DEFINE_boolean("records", False, "prepare: also write records to OUTDIR/records.", flag_values=fv)
    flags.DEFINE_boolean("no_bias_correction", False, "prepare: skip N4 bias-field correction.", flag_values=fv)
    flags.DEFINE_enum("skull_strip", "deepbet", ["deepbet", "none"], "prepare: skull stripping (none: the scans "
                      "are brain-only already).", flag_values=fv)
    flags.DEFINE_enum("register", "affine", ["affine", "none"], "prepare: affine registration to MNI152 (none: "
                      "the scans' affines already map to MNI152 mm).", flag_values=fv)
    flags.DEFINE_boolean("verify", False, "info: check every record's CRCs and parse a sample of them.",
                         flag_values=fv)
    flags.DEFINE_integer("verify_sample", 64, "info --verify: records parsed per file (evenly spaced).",
                         flag_values=fv)


def normalize_argv(argv):
    """The original's `--base_size 5 6 7` and `--shuffle 0|1`, and a bare `--labels` (the demo's
    conditional data), in absl's syntax; other tokens unchanged."""
    out, i = [argv[0]], 1
    while i < len(argv):
        token = argv[i]
        i += 1
        name, eq, _ = token[2:].partition("=")
        name = name.replace("-", "_")
        if not token.startswith("--") or eq:
            out.append(token)
        elif name in LIST_FLAGS:
            values = []
            while i < len(argv) and len(values) < 3 and argv[i].lstrip("-").replace(".", "", 1).isdigit():
                values.append(argv[i])
                i += 1
            out.append(f"--{name}={','.join(values)}" if values else token)
        elif name == "shuffle" and i < len(argv) and argv[i] in ("0", "1"):
            out.append("--shuffle" if argv[i] == "1" else "--noshuffle")
            i += 1
        elif name == "labels" and (i == len(argv) or argv[i].startswith("--")):
            out.append("--labels=demo")
        else:
            out.append(token)
    return out


def int_list(name, values):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise flag_error(name, f"expected integers, got {','.join(values)}") from None


class Progress:
    """A progress bar over the input files (one plain line at the end when stdout is not a terminal)."""

    def __init__(self):
        self.bar, self.mid_line = None, False

    def __call__(self, done, total):
        if self.bar is None:
            from tf3dstylegan.io import progress_bar
            self.bar = progress_bar(total, unit_name="file")
        self.bar.update(done)
        from tf3dstylegan.io import on_terminal
        self.mid_line = done < total and on_terminal()

    def end_line(self):
        """A newline if the bar is mid-line (before an error message)."""
        if self.mid_line:
            print(flush=True)


def print_summary(summary):
    print(f"wrote {summary['num_volumes']} volumes of shape {tuple(summary['img_shape'])} "
          f"to {', '.join(summary['files'])}")
    low, high = summary["input_range"]
    print(f"input values {low:.4g} .. {high:.4g}; stored values {summary['value_range'][0]:.4g} .. "
          f"{summary['value_range'][1]:.4g} (normalize={summary['normalize']})")
    if summary["labels"]:
        described = [c["name"] + (f" ({'/'.join(c['categories'])})" if "categories" in c else
                                  f" (mean {c['mean']:.4g}, std {c['std']:.4g})") for c in summary["labels"]]
        print(f"labels: {summary['label_size']} values per volume from {', '.join(described)}")
    if summary["num_clipped"]:
        print(f"{summary['num_clipped']} volumes had values outside [0, 1] and were clipped "
              "(consider --normalize percentile)")
    for path, fraction in summary["clipped"]:
        print(f"warning: {path}: --normalize {summary['normalize']} clipped {100 * fraction:.1f}% of its voxels")
    for line in summary["touching"][:10]:
        print(line)
    if len(summary["touching"]) > 10:
        print(f"... and {len(summary['touching']) - 10} more volumes touch a face of the grid")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} bad files:")
        for line in summary["skipped"]:
            print(f"  {line}")


def create(fv, args, progress):
    from tf3dstylegan.data import create_from_images3d  # pylint: disable=import-outside-toplevel; fast --help
    if fv.labels == "demo":
        raise flag_error("labels", "'demo' is for the demo subcommand; give a CSV or TSV covariate table")
    summary = create_from_images3d(
        args[0], args[1], base_size=int_list("base_size", fv.base_size), voxel_size=fv.voxel_size,
        img_shape=int_list("shape", fv.shape) if fv.shape else None, normalize=fv.normalize, shards=fv.shards,
        workers=fv.workers, skip_bad=fv.skip_bad, shuffle=fv.shuffle, lods=fv.lods, progress=progress,
        labels=fv.labels, label_columns=fv.label_columns, categorical=fv.categorical or (),
        max_voxels=fv.max_voxels)
    print_summary(summary)


def prepare(fv, args, progress):
    from tf3dstylegan.prepare import prepare_folder  # pylint: disable=import-outside-toplevel
    if fv.labels == "demo":
        raise flag_error("labels", "'demo' is for the demo subcommand; give a CSV or TSV covariate table")
    if fv.labels and not fv.records:
        raise flag_error("labels", "labels are written with the records: add --records")
    summary = prepare_folder(
        args[0], args[1], voxel_size=fv.voxel_size or 2.0,
        img_shape=int_list("shape", fv.shape) if fv.shape else None, bias_correction=not fv.no_bias_correction,
        skull_strip=fv.skull_strip, register=fv.register,
        workers=fv.workers, skip_bad=fv.skip_bad, records=fv.records, progress=progress, max_voxels=fv.max_voxels,
        **({"labels": fv.labels, "label_columns": fv.label_columns, "categorical": fv.categorical or ()}
           if fv.records else {}))
    print(f"prepared {summary['prepared']} of {summary['num_subjects']} subjects in {summary['outdir']} "
          f"({summary['resumed']} already done); report {summary['report']}")
    for name, reason in summary["flagged"].items():
        print(f"flagged {name}: {reason}" + (" (moved to excluded/)" if summary["excluded"] else
                                             " (kept; --skip_bad leaves it out)"))
    for line in summary["errors"]:
        print(f"skipped {line}")
    if summary["records"] is not None:
        print_summary(summary["records"])


def info(fv, args, progress):
    from tf3dstylegan.data import dataset_info, read_labels, verify_records  # pylint: disable=import-outside-toplevel
    if fv.verify_sample < 0:
        raise flag_error("verify_sample", f"must be >= 0, got {fv.verify_sample}")
    description = dataset_info(args[0])
    print(f"{description.num_volumes} volumes of shape {description.img_shape} x {description.num_channels} "
          f"channel(s) in {len(description.files)} file(s): {', '.join(str(f) for f in description.files)}")
    if description.label_size:
        encoding, _ = read_labels(args[0])
        names = ", ".join(encoding.names) if encoding is not None else "no labels.json"
        print(f"labels: {description.label_size} values per volume ({names})")
    if fv.verify:
        report = verify_records(args[0], sample=fv.verify_sample, progress=progress)
        print(f"verified {report['records']} records in {report['files']} file(s): CRCs of every record, "
              f"{fv.verify_sample} parsed per file")


def main(fv, args):
    if not args or args[0].replace("_", "-") not in SUBCOMMANDS:
        raise CommandError(f"expected a subcommand: {' | '.join(SUBCOMMANDS)} (see --help)")
    command, args = args[0].replace("_", "-"), args[1:]
    if len(args) != SUBCOMMANDS[command]:
        raise CommandError(f"{command}: expected {SUBCOMMANDS[command]} positional argument(s), got {len(args)}: "
                           f"{' '.join(args)}")
    progress = Progress()
    try:
        if command == "create-from-images3d":
            create(fv, args, progress)
        elif command == "info":
            info(fv, args, progress)
        elif command == "prepare":
            prepare(fv, args, progress)
        elif command == "split":
            from tf3dstylegan.data import split_folder  # pylint: disable=import-outside-toplevel
            train, valid = split_folder(args[0], valid_fraction=fv.valid_fraction, seed=fv.seed, copy=fv.copy)
            print(f"{len(train)} training and {len(valid)} validation files: {args[0].rstrip('/')}_train, "
                  f"{args[0].rstrip('/')}_valid")
        else:
            if fv.labels not in (None, "demo"):
                raise flag_error("labels", f"the demo data takes --labels demo (age and sex), got {fv.labels!r}")
            for name in ("num_subjects", "seed"):
                if fv[name].value < (1 if name == "num_subjects" else 0):
                    raise flag_error(name, f"must be >= {1 if name == 'num_subjects' else 0}, got {fv[name].value}")
            from tf3dstylegan.data import demo  # pylint: disable=import-outside-toplevel
            try:
                demo.demo_shape(fv.voxel_size or 2.0)
            except ValueError as err:
                raise flag_error("voxel_size", err) from None
            print(demo.demo_dataset(fv.voxel_size or 2.0, fv.num_subjects, fv.seed, fv.cache_dir,
                                    conditional=fv.labels == "demo"))
    except BaseException:
        progress.end_line()
        raise
    return 0
