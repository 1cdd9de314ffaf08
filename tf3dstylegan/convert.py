"""Convert an original TF1 snapshot (`.pkl`) to `G.keras`, `D.keras`, `G_ema.keras` and a report."""
from pathlib import Path

import numpy as np

from tf3dstylegan.io import atomic_path, write_json_atomic
from tf3dstylegan.loading import load_network

REPORT_NAME = "conversion_report.json"


def _count(model, trainable):
    weights = model.trainable_weights if trainable else model.non_trainable_weights
    return int(sum(np.prod(w.shape) for w in weights))


def non_finite_variables(model):
    """Paths of the model's variables holding NaN or Inf."""
    return [v.path for v in model.variables if not np.all(np.isfinite(v.numpy()))]


def convert(source, outdir, seed=0):
    """Write the three Keras models and a report; returns the report dict. ValueError (nothing written) when the
    source holds non-finite weights."""
    nets = load_network(source)
    models = {name: getattr(nets, name) for name in ("G", "D", "G_ema") if getattr(nets, name) is not None}
    bad = [f"{name}:{path}" for name, model in models.items() for path in non_finite_variables(model)]
    if bad:
        raise ValueError(f"{source}: {len(bad)} variables hold NaN or Inf (e.g. {', '.join(bad[:3])}); not converted")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        with atomic_path(outdir / f"{name}.keras") as tmp:
            model.save(tmp)
    z = np.random.RandomState(seed).randn(1, nets.G_ema.latent_size).astype(np.float32)
    volume = nets.G_ema(z, truncation_psi=1.0, noise_mode="const").numpy()
    report = {
        "source": str(source), "source_dtype": nets.source_dtype, "config": nets.config.to_dict(),
        "img_shape": list(nets.config.img_shape),
        "parameters": {name: {"trainable": _count(m, True), "non_trainable": _count(m, False)}
                       for name, m in models.items()},
        "seed0_volume": {"seed": seed, "min": float(volume.min()), "max": float(volume.max()),
                         "mean": float(volume.mean()), "std": float(volume.std())},
    }
    if nets.D is not None:
        report["seed0_volume"]["D_score"] = float(nets.D(volume).numpy()[0, 0])
    write_json_atomic(outdir / REPORT_NAME, report)
    return report
