"""A run's job identity: what must be the same for a rerun to continue a run folder instead of starting a new one.

The job is the model config (every ModelConfig field but the name, so label_size, label_encoding and the data's
normalisation included), the training config's loss and optimiser fields (not the schedule: total_kimg,
tick_kimg, snapshot_ticks, batch_size), the data source (a records folder's resolved absolute path; the built-in
demo data by its variant, wherever the cache is; "python function" for data given as a function), whether the
run is conditional, and the augmentation with the options it uses (aug; augpipe and aug_p for fixed; augpipe,
aug_target, ada_kimg and a given starting aug_p for ada). It is stored in training_options.json ("job").
"""
import json
from pathlib import Path

from tf3dstylegan.config import ModelConfig, load_config

TRAINING_FIELDS = ("g_lr", "d_lr", "adam_beta1", "adam_beta2", "adam_epsilon", "pl_weight", "pl_decay",
                   "pl_batch_shrink", "g_reg_interval", "d_loss", "d_gamma", "d_reg_interval", "ema_kimg",
                   "mirror_augment")
PYTHON_DATA = "python function"
AUGMENT_OPTIONS = ("aug", "augpipe", "aug_target", "aug_p", "ada_kimg")  # recorded only where the mode uses them
DEMO_PREFIX = "mni152-demo-"


def data_source(data) -> str:
    """How the job names its data: 'demo <variant>', a resolved absolute path, or 'python function'."""
    if data is None or callable(data):
        return PYTHON_DATA
    path = Path(data).resolve()
    if path.name.startswith(DEMO_PREFIX) and (path / "demo.json").is_file():
        return f"demo {path.name}"
    return str(path)


AUG_OPTIONS = {"none": (), "fixed": ("augpipe", "aug_p"), "ada": ("augpipe", "aug_target", "ada_kimg", "aug_p")}
AUG_OPTIONS["auto"] = AUG_OPTIONS["fixed"]  # the options auto may use: it becomes fixed or none once the data is known


def augmentation(aug, augpipe, aug_target, aug_p, ada_kimg) -> dict:
    """The augmentation options a run uses (unused ones left out); aug is resolved (not 'auto')."""
    if aug == "auto":
        raise ValueError("aug 'auto' is decided by the data: resolve the options first (TrainingOptions.resolved)")
    values = dict(augpipe=augpipe, aug_target=aug_target, aug_p=aug_p, ada_kimg=ada_kimg)
    return {"aug": aug, **{name: values[name] for name in AUG_OPTIONS[aug]}}


def job_identity(cfg, data, opts) -> dict:
    """The job of training config `cfg` (with the data's label_size/encoding/normalisation) on `data` with
    TrainingOptions `opts`, as JSON values."""
    model = {name: getattr(cfg, name) for name in ModelConfig.__dataclass_fields__ if name != "name"}
    job = {"model": model, "training": {name: getattr(cfg, name) for name in TRAINING_FIELDS},
           "data": data_source(data), "conditional": cfg.label_size > 0,
           "augment": augmentation(opts.aug, opts.augpipe, opts.aug_target, opts.aug_p, opts.ada_kimg)}
    return json.loads(json.dumps(job))  # tuples as lists: comparable with a job read back from JSON


def recorded_job(record) -> dict:
    """The job of a run from its training_options.json contents (runs written before the job was stored: derived
    from their config, data and augmentation fields); ValueError when the record is not readable as one."""
    if isinstance(record.get("job"), dict):
        return record["job"]
    cfg = load_config(record["config"])
    data = record.get("data")
    aug = augmentation(record.get("aug", "none"), record.get("augpipe"), record.get("aug_target"),
                       record.get("aug_p"), record.get("ada_kimg"))
    job = {"model": {name: getattr(cfg, name) for name in ModelConfig.__dataclass_fields__ if name != "name"},
           "training": {name: getattr(cfg, name) for name in TRAINING_FIELDS},
           "data": PYTHON_DATA if data is None else data if data == "demo" else data_source(data),
           "conditional": cfg.label_size > 0, "augment": aug}
    return json.loads(json.dumps(job))


def _flat(job, prefix=""):
    out = {}
    for key, value in job.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _label(key):
    section, _, name = key.partition(".")
    if section in ("model", "training"):
        return f"config field {name}"
    if section == "augment":
        return f"--{name}"
    return section


def _shown(value):
    text = json.dumps(value) if not isinstance(value, str) or not value else value
    return text if len(text) <= 60 else text[:57] + "..."


def differences(recorded, current) -> list:
    """['its data is X (this run: Y)', ...] for every part in which two jobs differ (empty: the same job); the data
    first, and of the augmentation only the mode when the modes differ."""
    old, new = _flat(recorded), _flat(current)
    keys = [k for k in sorted(set(old) | set(new), key=lambda k: (k != "data", k != "augment.aug", k))
            if old.get(k) != new.get(k)]
    if "augment.aug" in keys:
        keys = [k for k in keys if not k.startswith("augment.") or k == "augment.aug"]
    return [_difference(k, old.get(k, "not set"), new.get(k, "not set")) for k in keys]


def _difference(key, old, new):
    if key == "conditional":
        kind = {True: "conditional", False: "unconditional"}
        return f"it is {kind.get(old, old)} (this run: {kind.get(new, new)})"
    if key == "data":  # whole: two data folders' paths often differ only at their ends
        return f"its data is {old} (this run: {new})"
    return f"its {_label(key)} is {_shown(old)} (this run: {_shown(new)})"


SHAPE_FIELDS = ("base_size", "resolution_log2", "num_channels", "label_size", "latent_size", "dlatent_size",
                "mapping_fmaps", "mapping_layers", "g_architecture", "d_architecture", "no_noise",
                "mbstd_num_features")  # with the feature maps per level: what the variables' shapes follow


def check_network_file(path, cfg):
    """ValueError naming what differs when the networks of file or folder `path` (--resume NETWORK) cannot
    initialise config `cfg`'s: the fields their variables' shapes follow."""
    from tf3dstylegan.loading import claimed_config
    claimed = claimed_config(path)
    differ = [f"{name} {_shown(getattr(claimed, name))} (config {cfg.name!r}: {_shown(getattr(cfg, name))})"
              for name in SHAPE_FIELDS if getattr(claimed, name) != getattr(cfg, name)]
    levels = range(cfg.resolution_log2 + 1)
    if [claimed.nf(s) for s in levels] != [cfg.nf(s) for s in levels]:
        differ.append(f"feature maps per level {[claimed.nf(s) for s in levels]} (config {cfg.name!r}: "
                      f"{[cfg.nf(s) for s in levels]})")
    if differ:
        hint = (" (a conditional network: train it on records with labels)" if claimed.label_size and not
                cfg.label_size else " (pass the matching --cfg or --override)")
        raise ValueError(f"{path}: its networks do not fit config {cfg.name!r}: {'; '.join(differ)}{hint}")
