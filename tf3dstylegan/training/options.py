"""`TrainingOptions`: how one run is trained (beside the preset's model and loss settings), checked once,
and what `training_options.json` records."""
import dataclasses
import math
from typing import Optional

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
MIN_ADA_KIMG = 0.001  # faster is a jump of p, and at 1e-300 the step 1 / (ada_kimg * 1000) overflows to inf


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """kimg: thousands of real volumes to show D (None: the preset's total_kimg). batch: global batch (None: the
    preset's batch_size). resume: "auto" (latest run of this config), None/"none", a run folder, or a network file
    (.pkl/.keras) that initialises G, D and G_ema. snap: ticks between .keras/preview snapshots (None: the
    preset's snapshot_ticks). gradient_checkpointing: recompute block activations in the backward pass.
    aug: adaptive discriminator augmentation, "ada" (p adjusted toward aug_target), "fixed" (p = aug_p) or "none";
    augpipe: its transforms (training.augment.PIPELINES, e.g. "bgc"); options an aug mode does not use are not
    recorded (training.job.augmentation). labels: train on the data's covariates
    (None: whenever the records folder has them; True with the demo data: its conditional variant)."""

    kimg: Optional[float] = None
    batch: Optional[int] = None
    strategy: str = "auto"
    gpus: Optional[int] = None
    resume: Optional[str] = "auto"
    precision: str = "float32"
    jit: bool = False
    seed: int = 0
    snap: Optional[int] = None
    keep_checkpoints: int = 3
    gradient_checkpointing: bool = False
    progress: bool = False
    aug: str = "none"
    augpipe: str = "bgc"
    aug_target: float = 0.6
    aug_p: Optional[float] = None
    ada_kimg: float = 500.0
    labels: Optional[bool] = None

    def __post_init__(self):
        if self.kimg is not None and (isinstance(self.kimg, bool) or not math.isfinite(self.kimg) or self.kimg <= 0):
            raise ValueError(f"--kimg: must be a positive finite number, got {self.kimg}")
        for name, low in (("batch", 1), ("gpus", 1), ("snap", 1), ("keep_checkpoints", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"--{name}: must be an integer >= {low}, got {value!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 31:
            raise ValueError(f"--seed: must be an integer in [0, 2**31), got {self.seed!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.strategy, str) and self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy: must be one of {STRATEGIES}, got {self.strategy!r}")
        from tf3dstylegan.training.augment import MODES, parse_pipeline
        if self.aug not in MODES:
            raise ValueError(f"--aug: must be one of {MODES}, got {self.aug!r}")
        try:
            parse_pipeline(self.augpipe)
        except ValueError as err:
            raise ValueError(f"--augpipe: {err}") from None
        if not (isinstance(self.aug_target, (int, float)) and 0 < self.aug_target <= 1):
            raise ValueError(f"--aug_target: must be in (0, 1], got {self.aug_target!r}")
        if self.aug_p is not None and not (isinstance(self.aug_p, (int, float)) and 0 <= self.aug_p <= 1):
            raise ValueError(f"--aug_p: must be in [0, 1], got {self.aug_p!r}")
        if not (isinstance(self.ada_kimg, (int, float)) and math.isfinite(self.ada_kimg)
                and self.ada_kimg >= MIN_ADA_KIMG):
            raise ValueError(f"--ada_kimg: must be a finite number >= {MIN_ADA_KIMG} (p from 0 to 1 over one volume "
                             f"at the fastest), got {self.ada_kimg!r}")
        if self.aug == "fixed" and self.aug_p is None:
            raise ValueError("--aug_p: --aug fixed needs the constant augmentation probability")
        if self.resume == "none" or self.resume == "":
            object.__setattr__(self, "resume", None)
        if self.resume is not None:
            object.__setattr__(self, "resume", str(self.resume))

    def resolved(self, cfg):
        """A copy with kimg, batch and snap taken from the preset where they were left open."""
        return dataclasses.replace(self, kimg=cfg.total_kimg if self.kimg is None else self.kimg,
                                   batch=self.batch or cfg.batch_size, snap=self.snap or cfg.snapshot_ticks)
