"""Train 3D-StyleGAN: `{prog}` (the demo preset on the built-in demo data), or
`{prog} --cfg 2mm-fd96 --data RECORDS_FOLDER`.

Rerunning the same command continues the latest run of that config from its last checkpoint. Ctrl-C (or
SIGTERM) finishes the current step, writes a checkpoint and stops.
"""
import dataclasses
import math
import typing

from absl import flags

from tf3dstylegan import usage
from tf3dstylegan.cli import CommandError, flag_error

CPU_BATCH = 4  # 2mm-fd16 at batch 4 needs ~7.5 GB on the CPU; batch 16 does not fit a 24 GB machine
CPU_BATCH_VOXELS = 200_000  # volumes at least this large train at CPU_BATCH without a GPU (80x96x112: 860,160)


def define_flags(fv, options=None):
    """The command's own flags, then one per field of TrainingOptions (or of `options`, a subclass), named as the
    field, typed by its annotation, with its help text and default."""
    flags.DEFINE_string("cfg", "demo", "Config: a preset name (tf3dstylegan/configs/*.json) or a JSON file.",
                        flag_values=fv)
    flags.DEFINE_string("data", None, "TFRecords folder (the dataset command); default: the built-in demo dataset.",
                        flag_values=fv)
    flags.DEFINE_string("outdir", "runs", "Folder of the run folders (<id>-<cfg>).", flag_values=fv)
    flags.DEFINE_list("metrics", [], "Metrics at each snapshot, e.g. fid_slices,bmmd2,msssim,fid3d.", flag_values=fv)
    flags.DEFINE_integer("metrics_num", 100, "Volumes per metric evaluation.", flag_values=fv)
    flags.DEFINE_multi_string("override", [], "key=value for any config field, e.g. --override tick_kimg=1 "
                              "(repeatable).", flag_values=fv)
    from tf3dstylegan.training.options import TrainingOptions
    for field in dataclasses.fields(options or TrainingOptions):
        kind = typing.get_args(field.type)[0] if typing.get_origin(field.type) is typing.Union else field.type
        choices, text = field.metadata.get("choices"), field.metadata["help"]
        if choices:
            flags.DEFINE_enum(field.name, field.default, list(choices), text, flag_values=fv)
        else:
            define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                      str: flags.DEFINE_string}[kind]
            define(field.name, field.default, text, flag_values=fv)


def option_values(fv, options=None):
    """{field: flag value} of every TrainingOptions field (or of `options`, a subclass)."""
    from tf3dstylegan.training.options import TrainingOptions
    return {field.name: fv[field.name].value for field in dataclasses.fields(options or TrainingOptions)}


def main(fv, args):
    if args:
        raise CommandError(f"unexpected arguments: {' '.join(args)}")
    from tf3dstylegan.config import load_config, parse_override
    try:
        cfg = load_config(fv.cfg, **dict(parse_override(text) for text in fv.override))
    except ValueError as err:
        raise flag_error("cfg" if not fv.override else "override", err) from None
    metrics = _metrics_function(fv.metrics, fv.metrics_num)
    from tf3dstylegan import backend
    from tf3dstylegan.training import TrainingOptions, train
    options = option_values(fv)
    if (fv.batch is None and not backend.has_accelerator() and cfg.batch_size > CPU_BATCH
            and math.prod(cfg.img_shape) >= CPU_BATCH_VOXELS):
        options["batch"] = CPU_BATCH
    TrainingOptions(**options)  # every flag checked before any work
    from tf3dstylegan.training.job import AUG_OPTIONS
    unused = [f"--{name}" for name in AUG_OPTIONS["ada"] if fv[name].present and name not in AUG_OPTIONS[fv.aug]]
    if unused:
        print(f"note: --aug {fv.aug} does not use {', '.join(unused)}: ignored and not recorded")
    if options["batch"] != fv.batch:
        print(f"no GPU: batch {options['batch']} instead of {cfg.batch_size} (set --batch to change)")
    data = fv.data
    if data is None:
        from tf3dstylegan.data import demo_dataset
        data = demo_dataset(voxel_size=cfg.voxel_size, conditional=fv.labels is True)
    run_dir = train(cfg, data, fv.outdir, metrics=metrics(data) if metrics else None,
                    log=lambda line: print(line, flush=True), **options)
    print(f"previews: {run_dir}/fakes*.png  (G_ema on 8 fixed latents; the newest is the last in name order)")
    if cfg.name == "demo":
        train_command = usage.command("train")
        print(f"next: the paper's presets, e.g. `{train_command} --cfg 2mm-fd16 --kimg 1` (2 mm, 80x96x112) or "
              f"`{train_command} --cfg 2mm-fd96 --data RECORDS --gpus 4`")


def _metrics_function(names, num):
    """None, or data -> (G_ema -> {metric: value} on `num` generated volumes); names checked now."""
    if not names:
        return None
    from tf3dstylegan.metrics import compute_metrics
    from tf3dstylegan.metrics.runner import METRICS
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise flag_error("metrics", f"unknown metrics {unknown}; choose from {list(METRICS)}")
    if num < 2:
        raise flag_error("metrics_num", f"must be >= 2, got {num}")

    def bind(data):
        extractors = None  # the feature networks: built at the first snapshot, then reused

        def evaluate(G):
            nonlocal extractors
            from tf3dstylegan.metrics.extractors import FeatureExtractors
            extractors = extractors or FeatureExtractors(names)
            results = compute_metrics(G, data, names, num=num, reference=False, extractors=extractors,
                                      cache_reals=True)
            return {key: value for key, value in results.items() if isinstance(value, float)}
        return evaluate
    return bind
