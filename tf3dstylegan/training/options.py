"""`TrainingOptions`: how one run is trained (beside the preset's model and loss settings), checked once.

Each option is declared once, as a field with its help text: train.py's flags (commands/train.py), the record in
`training_options.json` (training.loop) and `train()`'s keyword arguments all come from these fields, so a new
option is one new field.
"""
import dataclasses
import math
from typing import Optional

from tf3dstylegan.config import MIN_ADA_KIMG

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
SMALL_DATASET = 1000  # volumes: aug "auto" is a fixed p below this (measured on the demo: bench/bench_ada.py)
SMALL_DATA_AUG_P = 0.4  # aug "auto", small records folder: this fixed p (docs/ada.md, "The defaults")
CONDITIONAL_AUG_P = 0.6  # the same, conditional


def option(default, help, choices=None):  # noqa: A002 (absl's word)
    """A TrainingOptions field: its default, its help text (the flag's) and, for an enum, its choices."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """How a run is trained: the fields below (each with its help text); see also `resolved`."""

    kimg: Optional[float] = option(None, "Train until D has seen this many thousand real volumes (default: the "
                                         "preset's total_kimg).")
    batch: Optional[int] = option(None, "Global minibatch, split over all replicas (default: the preset's "
                                        "batch_size; training uses at most 4 for 2 mm and finer without a GPU).")
    strategy: str = option("auto", "How to use several devices: auto (TensorFlow: multi-worker when TF_CONFIG is "
                                   "set, mirrored over several GPUs; JAX: DataParallel over all devices), default, "
                                   "mirrored or multiworker (JAX: jax.distributed).", STRATEGIES)
    gpus: Optional[int] = option(None, "Use only the first N GPUs (default: all visible).")
    resume: Optional[str] = option("auto", "auto (the latest run of this config with the same job), none, a run "
                                           "folder, or a .pkl/.keras network that initialises G, D and G_ema.")
    precision: str = option("float32", "Compute precision (float32 master weights; JAX: float32 or "
                                       "mixed_bfloat16).", PRECISIONS)
    jit: bool = option(False, "TensorFlow: compile the whole training step with XLA (GPUs; slow on the CPU). The "
                              "JAX step is always compiled.")
    seed: int = option(0, "Random seed (weights, latents, data order).")
    snap: Optional[int] = option(None, "Ticks between G_ema .keras snapshots and preview PNGs (default: the preset's "
                                       "snapshot_ticks; checkpoints: every tick).")
    keep_checkpoints: int = option(3, "Checkpoints to keep.")
    gradient_checkpointing: bool = option(False, "Recompute block activations in the backward pass (less memory).")
    progress: bool = option(True, "A live progress bar within each tick (on a terminal only).")
    aug: str = option("auto", "Discriminator augmentation: ada (p adapts toward --aug_target), fixed (p = --aug_p), "
                              f"none, or auto: for a records folder of fewer than {SMALL_DATASET} volumes (the demo "
                              f"data included) fixed (--aug_p, default {SMALL_DATA_AUG_P}; {CONDITIONAL_AUG_P} when "
                              "conditional), else none. Options a mode does not use are not recorded.",
                      ("auto", "ada", "fixed", "none"))
    augpipe: str = option("bc", "Augmentations: letters b (integer translation), g (scaling, rotation, anisotropy, "
                                 "fractional translation), c (brightness, contrast, gamma), f (bias field), "
                                 "n (noise), o (cutout), x (left-right flip), e.g. bgc, bgcf.")
    aug_target: float = option(0.5, "ADA's target for r_t = E[sign(D(reals))] (stylegan2-ada's 0.6 kept p near 0 on "
                                    "the demo data, 0.4 overshot its real pairs' diversity: README, ADA).")
    aug_p: Optional[float] = option(None, "Augmentation probability: constant with --aug fixed (and auto), the "
                                          "start with ada.")
    ada_kimg: Optional[float] = option(None, "ADA's speed: thousands of volumes over which p can go from 0 to 1 "
                                             "(default: the preset's ada_kimg, 500 as stylegan2-ada; the demo: 10).")
    labels: Optional[bool] = option(None, "Condition on the data's covariates (default: whenever the records folder "
                                          "has labels; with the demo data: its conditional variant, age and sex).")

    def __post_init__(self):
        if self.kimg is not None and (isinstance(self.kimg, bool) or not math.isfinite(self.kimg) or self.kimg <= 0):
            raise ValueError(f"--kimg: must be a positive finite number, got {self.kimg}")
        for name, low in (("batch", 1), ("gpus", 1), ("snap", 1), ("keep_checkpoints", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"--{name}: must be an integer >= {low}, got {value!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 31:
            raise ValueError(f"--seed: must be an integer in [0, 2**31), got {self.seed!r}")
        for field in dataclasses.fields(self):
            choices, value = field.metadata.get("choices"), getattr(self, field.name)
            if choices and isinstance(value, str) and value not in choices:
                raise ValueError(f"--{field.name}: must be one of {choices}, got {value!r}")
        from tf3dstylegan.training.augment import parse_pipeline
        try:
            parse_pipeline(self.augpipe)
        except ValueError as err:
            raise ValueError(f"--augpipe: {err}") from None
        if not (isinstance(self.aug_target, (int, float)) and 0 < self.aug_target <= 1):
            raise ValueError(f"--aug_target: must be in (0, 1], got {self.aug_target!r}")
        if self.aug_p is not None and not (isinstance(self.aug_p, (int, float)) and 0 <= self.aug_p <= 1):
            raise ValueError(f"--aug_p: must be in [0, 1], got {self.aug_p!r}")
        if self.ada_kimg is not None and not (isinstance(self.ada_kimg, (int, float)) and math.isfinite(self.ada_kimg)
                                              and self.ada_kimg >= MIN_ADA_KIMG):
            raise ValueError(f"--ada_kimg: must be a finite number >= {MIN_ADA_KIMG} (p from 0 to 1 over one volume "
                             f"at the fastest), got {self.ada_kimg!r}")
        if self.aug == "fixed" and self.aug_p is None:
            raise ValueError("--aug_p: --aug fixed needs the constant augmentation probability")
        if self.resume == "none" or self.resume == "":
            object.__setattr__(self, "resume", None)
        if self.resume is not None:
            object.__setattr__(self, "resume", str(self.resume))

    def resolved(self, cfg, num_volumes=None):
        """A copy with kimg, batch, snap and ada_kimg taken from the preset where they were left open, and aug
        'auto' decided by num_volumes (the records folder's volumes; None: data of unknown size, no augmentation)
        and cfg.label_size (the fixed p of a small records folder: SMALL_DATA_AUG_P, or CONDITIONAL_AUG_P)."""
        aug, aug_p = self.aug, self.aug_p
        if aug == "auto":
            small = num_volumes is not None and num_volumes < SMALL_DATASET
            aug = "fixed" if small else "none"
            if small and aug_p is None:
                aug_p = CONDITIONAL_AUG_P if cfg.label_size else SMALL_DATA_AUG_P
        return dataclasses.replace(self, kimg=cfg.total_kimg if self.kimg is None else self.kimg,
                                   batch=self.batch or cfg.batch_size, snap=self.snap or cfg.snapshot_ticks,
                                   aug=aug, aug_p=aug_p,
                                   ada_kimg=cfg.ada_kimg if self.ada_kimg is None else self.ada_kimg)

    def record(self):
        """The options as training_options.json holds them (JSON values)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

