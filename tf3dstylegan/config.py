"""Typed configuration: `ModelConfig` (what a network and a `.keras` file need) and `TrainingConfig` (how it
is trained), together in a preset (`Config`) read from the package's `configs/<name>.json`.

A preset file holds only the fields that differ from the defaults; every field can be overridden by name
(`load_config("2mm-fd96", batch_size=4)` or `--override key=value`). Every field is type- and range-checked
when a config is made, and a bad one is named with what it expects.
"""
import dataclasses
import importlib.resources
import json
import math
import os
import typing
from pathlib import Path
from typing import Optional, Tuple

G_ARCHITECTURES = D_ARCHITECTURES = ("orig", "skip", "resnet")
D_LOSSES = ("logistic", "logistic_r1", "logistic_r2")
MAX_RESOLUTION_LOG2 = 10  # base 5x6x7 at R=8 is 1 mm; 10 is far beyond any scanner
MAX_WIDTH = 4096  # feature maps, latent and mapping widths


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The networks: geometry, widths, architectures. Every image axis is base_size[i] * 2**(resolution_log2 - 2)."""

    name: str = "custom"
    base_size: Tuple[int, int, int] = (5, 6, 7)
    resolution_log2: int = 6
    voxel_size: float = 2.0  # mm, used for NIfTI affines and data resampling
    num_channels: int = 1
    label_size: int = 0
    # Feature maps: nf(stage) = clip(fmap_base / 2**(stage*fmap_decay), fmap_min, fmap_max).
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_min: int = 16
    fmap_max: int = 16
    latent_size: int = 64
    dlatent_size: int = 64
    mapping_fmaps: int = 64
    mapping_layers: int = 8
    mapping_lrmul: float = 0.01
    g_architecture: str = "orig"
    d_architecture: str = "resnet"
    no_noise: bool = False
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1
    # The generator's training pass: w_avg tracking and style mixing.
    dlatent_avg_beta: float = 0.995
    style_mixing_prob: float = 0.9
    # A conditional network's covariates: the JSON of tf3dstylegan.data.labels.LabelEncoding ("" when none), so
    # that a generator knows its covariates by name.
    label_encoding: str = ""
    data_normalize: str = ""  # the training data's --normalize ("" unknown): project treats scans the same way

    def __post_init__(self):
        _validate(self)

    @property
    def img_shape(self) -> Tuple[int, int, int]:
        """Spatial image shape (X, Y, Z)."""
        scale = 2 ** (self.resolution_log2 - 2)
        return tuple(b * scale for b in self.base_size)

    @property
    def num_ws(self) -> int:
        """Number of style inputs of the synthesis network (two per level, one for the base, one for the output)."""
        return 2 * self.resolution_log2 - 2

    def nf(self, stage: int) -> int:
        """Feature maps at a stage: clip(fmap_base / 2**(stage * fmap_decay), fmap_min, fmap_max)."""
        value = int(self.fmap_base / (2.0 ** (stage * self.fmap_decay)))
        return int(min(max(value, self.fmap_min), self.fmap_max))

    def min_generator_bytes(self) -> int:
        """A lower bound of the float32 bytes a stored generator of this config holds (its per-layer noise maps
        and the second convolution of each level), to check a file's claims before building anything."""
        noise = math.prod(self.base_size)  # the base layer's noise map, then two per level
        convs = 27 * self.nf(1) ** 2
        for r in range(3, self.resolution_log2 + 1):
            noise += 2 * math.prod(b * 2 ** (r - 2) for b in self.base_size)
            convs += 27 * self.nf(r - 1) ** 2
        return 4 * (noise + convs + self.mapping_fmaps * self.dlatent_size)

    def replace(self, **overrides):
        """A copy with some fields changed; unknown fields raise ValueError."""
        return dataclasses.replace(self, **_checked_fields(type(self), overrides))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Losses, optimisers and schedule (the paper's lazy regularisation)."""

    batch_size: int = 8
    g_lr: float = 0.002
    d_lr: float = 0.002
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    adam_epsilon: float = 1e-8
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    g_reg_interval: Optional[int] = 16
    d_loss: str = "logistic"
    d_gamma: float = 10.0
    d_reg_interval: Optional[int] = 16
    ema_kimg: float = 10.0
    ada_kimg: float = 500.0  # ADA's speed (stylegan2-ada's): kimg over which p can go from 0 to 1
    mirror_augment: bool = False
    total_kimg: float = 25000.0
    tick_kimg: float = 8.0
    snapshot_ticks: int = 1

    def __post_init__(self):
        _validate(self)


@dataclasses.dataclass(frozen=True)
class Config(ModelConfig, TrainingConfig):
    """A preset: every model and training field, flat (`cfg.fmap_max`, `cfg.batch_size`)."""

    def __post_init__(self):
        _validate(self)

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(**_fields_of(ModelConfig, self.to_dict()))

    @property
    def training(self) -> TrainingConfig:
        return TrainingConfig(**_fields_of(TrainingConfig, self.to_dict()))


MIN_ADA_KIMG = 0.001  # faster is a jump of p, and at 1e-300 the step 1 / (ada_kimg * 1000) overflows to inf
# Allowed ranges: (min, max) inclusive, None for unbounded; checked after the types.
_RANGES = {
    "resolution_log2": (2, MAX_RESOLUTION_LOG2), "voxel_size": (1e-3, 1e3), "num_channels": (1, 16),
    "label_size": (0, MAX_WIDTH), "fmap_base": (1, None), "fmap_decay": (0.0, 10.0), "fmap_min": (1, MAX_WIDTH),
    "fmap_max": (1, MAX_WIDTH), "latent_size": (1, MAX_WIDTH), "dlatent_size": (1, MAX_WIDTH),
    "mapping_fmaps": (1, MAX_WIDTH), "mapping_layers": (1, 64), "mapping_lrmul": (1e-8, None),
    "mbstd_group_size": (0, None), "mbstd_num_features": (0, 64), "dlatent_avg_beta": (0.0, 1.0),
    "style_mixing_prob": (0.0, 1.0), "batch_size": (1, None), "g_lr": (0.0, None), "d_lr": (0.0, None),
    "adam_beta1": (0.0, 1.0), "adam_beta2": (0.0, 1.0), "adam_epsilon": (0.0, None), "pl_weight": (0.0, None),
    "pl_decay": (0.0, 1.0), "pl_batch_shrink": (1, None), "g_reg_interval": (1, None), "d_gamma": (0.0, None),
    "d_reg_interval": (1, None), "ema_kimg": (0.0, None), "ada_kimg": (MIN_ADA_KIMG, None), "total_kimg": (0.0, None),
    "tick_kimg": (1e-6, None), "snapshot_ticks": (1, None),
}
_CHOICES = {"g_architecture": G_ARCHITECTURES, "d_architecture": D_ARCHITECTURES, "d_loss": D_LOSSES,
            "data_normalize": ("", "none", "minmax", "percentile")}


def _expected(field, kind, value):
    return ValueError(f"config field {field}: expected {kind}, got {value!r}")


def _coerce(field, hint, value):
    """value checked against a type hint (int, float, bool, str, Optional[...], Tuple[int, ...])."""
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        return None if value is None else _coerce(field, typing.get_args(hint)[0], value)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
            raise _expected(field, f"a list of {len(typing.get_args(hint))} integers", value)
        return tuple(_coerce(field, int, v) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _expected(field, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise _expected(field, "an integer", value)
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _expected(field, "a finite number", value)
        return float(value)
    if not isinstance(value, str):
        raise _expected(field, "a string", value)
    return value


def _validate(cfg):
    hints = typing.get_type_hints(type(cfg))
    for field in dataclasses.fields(cfg):
        value = _coerce(field.name, hints[field.name], getattr(cfg, field.name))
        object.__setattr__(cfg, field.name, value)
        if field.name in _CHOICES and value not in _CHOICES[field.name]:
            raise ValueError(f"config field {field.name}: must be one of {_CHOICES[field.name]}, got {value!r}")
        low, high = _RANGES.get(field.name, (None, None))
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(f"config field {field.name}: must be {bounds}, got {value!r}")
    if hasattr(cfg, "base_size") and min(cfg.base_size) < 1:
        raise ValueError(f"config field base_size: must be 3 positive integers, got {list(cfg.base_size)}")
    if hasattr(cfg, "name") and (not cfg.name or any(c in cfg.name for c in "/\\\0") or cfg.name in (".", "..")):
        raise ValueError(f"config field name: must be a plain name (no path separators), got {cfg.name!r}")
    if getattr(cfg, "label_encoding", ""):
        try:
            size = json.loads(cfg.label_encoding)["label_size"]
        except (ValueError, KeyError, TypeError):
            raise ValueError("config field label_encoding: not a label encoding (JSON with label_size)") from None
        if size != cfg.label_size:
            raise ValueError(f"config field label_encoding: encodes {size} label values, label_size is "
                             f"{cfg.label_size}")
    if hasattr(cfg, "fmap_min") and cfg.fmap_min > cfg.fmap_max:
        raise ValueError(f"config fields fmap_min {cfg.fmap_min} > fmap_max {cfg.fmap_max}")


def resolution_log2_for_shape(img_shape, base_size) -> int:
    """The R with img_shape == base_size * 2**(R-2); ValueError when none exists."""
    img_shape, base_size = tuple(int(s) for s in img_shape), tuple(int(b) for b in base_size)
    if len(img_shape) != 3:
        raise ValueError(f"image shape must have 3 spatial axes, got {img_shape}")
    ratio = img_shape[0] // base_size[0]
    if ratio >= 1 and ratio & (ratio - 1) == 0:
        if tuple(b * ratio for b in base_size) == img_shape:
            return ratio.bit_length() + 1
    raise ValueError(
        f"image shape {img_shape} does not fit base_size {base_size}: "
        f"expected base_size * 2**k, e.g. {tuple(b * 16 for b in base_size)}")


def _preset_files():
    """{name: resource} of the presets shipped inside the package (tf3dstylegan/configs/*.json)."""
    folder = importlib.resources.files("tf3dstylegan") / "configs"
    return {entry.name[:-5]: entry for entry in folder.iterdir() if entry.name.endswith(".json")}


def available_presets():
    """Names usable as --cfg."""
    return sorted(_preset_files())


def _read_fields(spec) -> dict:
    """The fields of a preset name or a .json file (its stem as the default name)."""
    spec = os.fspath(spec)
    presets = _preset_files()
    if spec.endswith(".json"):
        path, name = Path(spec), Path(spec).stem
        if not path.is_file():
            raise ValueError(f"{spec}: no such config file")
    elif spec in presets:
        path, name = presets[spec], spec
    else:
        raise ValueError(f"unknown config {spec!r}: expected a .json file or one of {sorted(presets)}")
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{spec}: not valid JSON ({err})") from None
    if not isinstance(fields, dict):
        raise ValueError(f"{spec}: a config file must hold a JSON object, got {type(fields).__name__}")
    fields = {k: v for k, v in fields.items() if not k.startswith("_")}  # "_comment" keys
    fields.setdefault("name", name)
    return fields


def load_config(spec="2mm-fd16", **overrides) -> Config:
    """A preset Config from a preset name, a JSON file path, a dict or a Config, with overrides applied."""
    if isinstance(spec, Config) and not overrides:
        return spec
    if isinstance(spec, (ModelConfig, TrainingConfig)):
        fields = spec.to_dict() if hasattr(spec, "to_dict") else dataclasses.asdict(spec)
    elif isinstance(spec, dict):
        fields = dict(spec)
    else:
        fields = _read_fields(spec)
    fields.update(overrides)
    if "img_shape" in fields:  # accepted in place of resolution_log2
        shape = fields.pop("img_shape")
        fields["resolution_log2"] = resolution_log2_for_shape(shape, fields.get("base_size", Config.base_size))
    return Config(**_checked_fields(Config, fields))


def load_model_config(spec="2mm-fd16", **overrides) -> ModelConfig:
    """The ModelConfig of anything `load_config` takes, or of a dict holding model fields (training fields,
    as `.keras` files written before the split carry them, are ignored)."""
    if isinstance(spec, ModelConfig) and type(spec) is ModelConfig and not overrides:
        return spec
    if isinstance(spec, dict):
        training = {f.name for f in dataclasses.fields(TrainingConfig)}
        spec = {k: v for k, v in spec.items() if k not in training}
        return ModelConfig(**_checked_fields(ModelConfig, {**spec, **overrides}))
    return load_config(spec, **overrides).model


def parse_override(text: str):
    """'key=value' -> (key, value parsed as JSON when possible, else the string)."""
    if "=" not in text:
        raise ValueError(f"--override {text!r}: must look like key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _fields_of(cls, values: dict) -> dict:
    return {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(cls)}}


def _checked_fields(cls, fields: dict) -> dict:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; known fields: {sorted(known)}")
    return fields
