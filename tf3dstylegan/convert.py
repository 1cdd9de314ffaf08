"""Convert an original TF1 snapshot (`.pkl`) to `G.keras`, `D.keras`, `G_ema.keras` and a report, written as one
folder (a temporary folder renamed when complete)."""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tf3dstylegan.io import write_json_atomic
from tf3dstylegan.loading import load_network

REPORT_NAME = "conversion_report.json"


def _count(model, trainable):
    weights = model.trainable_weights if trainable else model.non_trainable_weights
    return int(sum(np.prod(w.shape) for w in weights))


def non_finite_variables(model):
    """Paths of the model's variables holding NaN or Inf."""
    return [v.path for v in model.variables if not np.all(np.isfinite(v.numpy()))]


def default_labels(label_size):
    """The label vector the report's seed-0 volume of a conditional network is made with: the first one-hot vector
    (a legacy pickle does not name its covariates, and the original's conditional datasets are one-hot)."""
    return np.eye(1, label_size, dtype=np.float32)  # [1, label_size]


def convert(source, outdir, seed=0):
    """Write the three Keras models and a report into `outdir` (a new or empty folder, made whole or not at all:
    written in a temporary folder beside it, then renamed); returns the report dict. ValueError (nothing written)
    when the source holds non-finite weights or outdir holds files. A conditional network's seed-0 volume is made
    with default_labels."""
    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise ValueError(f"{outdir}: {'already holds files' if outdir.is_dir() else 'exists and is not a folder'}; "
                         f"convert into a new or empty folder")
    nets = load_network(source)
    models = {name: getattr(nets, name) for name in ("G", "D", "G_ema") if getattr(nets, name) is not None}
    bad = [f"{name}:{path}" for name, model in models.items() for path in non_finite_variables(model)]
    if bad:
        raise ValueError(f"{source}: {len(bad)} variables hold NaN or Inf (e.g. {', '.join(bad[:3])}); not converted")
    z = np.random.RandomState(seed).randn(1, nets.G_ema.latent_size).astype(np.float32)
    labels = default_labels(nets.config.label_size) if nets.config.label_size else None
    volume = nets.G_ema(z, truncation_psi=1.0, noise_mode="const", labels=labels).numpy()
    report = {
        "source": str(source), "source_dtype": nets.source_dtype, "config": nets.config.to_dict(),
        "img_shape": list(nets.config.img_shape),
        "parameters": {name: {"trainable": _count(m, True), "non_trainable": _count(m, False)}
                       for name, m in models.items()},
        "seed0_volume": {"seed": seed, "labels": None if labels is None else labels[0].tolist(),
                         "min": float(volume.min()), "max": float(volume.max()),
                         "mean": float(volume.mean()), "std": float(volume.std())},
    }
    if nets.D is not None:
        report["seed0_volume"]["D_score"] = float(nets.D(volume, labels).numpy()[0, 0])
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp", dir=outdir.parent))
    try:
        for name, model in models.items():
            model.save(tmp / f"{name}.keras")
        write_json_atomic(tmp / REPORT_NAME, report)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the folder private to the writer
        os.rename(tmp, outdir)  # replaces an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
