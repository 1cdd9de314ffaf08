"""One typed configuration object for networks and training, read from `configs/<name>.json`.

A preset file holds only the fields that differ from the defaults below; every field can be
overridden (`load_config("2mm-fd96", batch_size=4)` or `--override key=value` on the command line).
"""
import dataclasses
import json
import os
from pathlib import Path
from typing import Optional, Tuple

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

G_ARCHITECTURES = ("orig", "skip", "resnet")
D_ARCHITECTURES = ("orig", "skip", "resnet")
D_LOSSES = ("logistic", "logistic_r1", "logistic_r2")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a model and how it is trained."""

    name: str = "custom"
    # Geometry (spec §1): every image axis is base_size[i] * 2**(resolution_log2 - 2).
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
    # Mapping network.
    latent_size: int = 64
    dlatent_size: int = 64
    mapping_fmaps: int = 64
    mapping_layers: int = 8
    mapping_lrmul: float = 0.01
    # Architectures.
    g_architecture: str = "orig"
    d_architecture: str = "resnet"
    no_noise: bool = False
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1
    # Training (spec §5, with the paper's lazy regularisation).
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
    style_mixing_prob: float = 0.9
    dlatent_avg_beta: float = 0.995
    mirror_augment: bool = False
    total_kimg: float = 25000.0
    tick_kimg: float = 8.0
    snapshot_ticks: int = 1

    def __post_init__(self):
        object.__setattr__(self, "base_size", tuple(int(b) for b in self.base_size))
        if len(self.base_size) != 3 or min(self.base_size) < 1:
            raise ValueError(f"base_size must be 3 positive ints, got {self.base_size}")
        if self.resolution_log2 < 2:
            raise ValueError(f"resolution_log2 must be >= 2, got {self.resolution_log2}")
        if self.g_architecture not in G_ARCHITECTURES:
            raise ValueError(f"g_architecture must be one of {G_ARCHITECTURES}, got {self.g_architecture!r}")
        if self.d_architecture not in D_ARCHITECTURES:
            raise ValueError(f"d_architecture must be one of {D_ARCHITECTURES}, got {self.d_architecture!r}")
        if self.d_loss not in D_LOSSES:
            raise ValueError(f"d_loss must be one of {D_LOSSES}, got {self.d_loss!r}")

    @property
    def img_shape(self) -> Tuple[int, int, int]:
        """Spatial image shape (X, Y, Z)."""
        scale = 2 ** (self.resolution_log2 - 2)
        return tuple(b * scale for b in self.base_size)

    @property
    def num_ws(self) -> int:
        """Number of style inputs of the synthesis network."""
        return 2 * self.resolution_log2 - 2

    def nf(self, stage: int) -> int:
        """Feature maps at a stage (spec §1)."""
        value = int(self.fmap_base / (2.0 ** (stage * self.fmap_decay)))
        return int(min(max(value, self.fmap_min), self.fmap_max))

    def replace(self, **overrides) -> "Config":
        """A copy with some fields changed; unknown fields raise ValueError."""
        return dataclasses.replace(self, **_checked_fields(overrides))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, path) -> None:
        _write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


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


def available_presets():
    """Names usable as --cfg."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(spec="2mm-fd16", **overrides) -> Config:
    """A Config from a preset name, a JSON file path, a dict or a Config, with overrides applied."""
    if isinstance(spec, Config):
        if not overrides:
            return spec
        spec = spec.to_dict()
    if isinstance(spec, dict):
        fields = dict(spec)
    else:
        spec = os.fspath(spec)
        path = Path(spec) if spec.endswith(".json") else CONFIG_DIR / f"{spec}.json"
        if not path.is_file():
            raise ValueError(f"unknown config {spec!r}: expected a file or one of {available_presets()}")
        try:
            fields = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        fields = {k: v for k, v in fields.items() if not k.startswith("_")}  # "_comment" keys
        fields.setdefault("name", path.stem)
    fields.update(overrides)
    if "img_shape" in fields:  # accepted in place of resolution_log2
        shape = fields.pop("img_shape")
        fields["resolution_log2"] = resolution_log2_for_shape(shape, fields.get("base_size", Config.base_size))
    return Config(**_checked_fields(fields))


def parse_override(text: str):
    """'key=value' -> (key, value parsed as JSON when possible, else the string)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _checked_fields(fields: dict) -> dict:
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; known fields: {sorted(known)}")
    return fields


def _write_text_atomic(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
