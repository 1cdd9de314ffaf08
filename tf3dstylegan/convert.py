"""`python -m tf3dstylegan convert SNAPSHOT.pkl OUTDIR`: a legacy TF1 snapshot to G.keras, D.keras, G_ema.keras."""
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from tf3dstylegan.legacy import LegacyFormatError, load_network

REPORT_NAME = "conversion_report.json"


def save_keras_atomic(model, path):
    """model.save(path) through a temporary file in the same folder, then rename."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmp:
        tmp_path = Path(tmp) / path.name
        model.save(tmp_path)
        os.replace(tmp_path, path)


def _count(model, trainable):
    weights = model.trainable_weights if trainable else model.non_trainable_weights
    return int(sum(np.prod(w.shape) for w in weights))


def convert(source, outdir, seed=0):
    """Write the three Keras models and a report; returns the report dict."""
    nets = load_network(source)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in ("G", "D", "G_ema"):
        model = getattr(nets, name)
        if model is not None:
            save_keras_atomic(model, outdir / f"{name}.keras")
    z = np.random.RandomState(seed).randn(1, nets.G_ema.z_dim).astype(np.float32)
    volume = nets.G_ema(z, truncation_psi=1.0, noise_mode="const").numpy()
    report = {
        "source": str(source), "source_dtype": nets.source_dtype, "config": nets.config.to_dict(),
        "img_shape": list(nets.config.img_shape),
        "parameters": {name: {"trainable": _count(m, True), "non_trainable": _count(m, False)}
                       for name, m in (("G", nets.G), ("D", nets.D), ("G_ema", nets.G_ema)) if m is not None},
        "seed0_volume": {"seed": seed, "min": float(volume.min()), "max": float(volume.max()),
                         "mean": float(volume.mean()), "std": float(volume.std())},
    }
    if nets.D is not None:
        report["seed0_volume"]["D_score"] = float(nets.D(volume).numpy()[0, 0])
    tmp = outdir / (REPORT_NAME + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, outdir / REPORT_NAME)
    return report


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: python -m tf3dstylegan convert SNAPSHOT.pkl OUTDIR")
    try:
        report = convert(argv[1], argv[2])
    except (LegacyFormatError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    cfg, params = report["config"], report["parameters"]
    print(f"converted {report['source']} -> {argv[2]}")
    print(f"  image {tuple(report['img_shape'])}, G {cfg['g_architecture']}, D {cfg['d_architecture']}, "
          f"fmaps {cfg['fmap_min']}-{cfg['fmap_max']}, latent {cfg['latent_size']}, w {cfg['dlatent_size']}, "
          f"original dtype {report['source_dtype']}")
    print("  trainable parameters: " + ", ".join(f"{k} {v['trainable']:,}" for k, v in params.items()))
    stats = report["seed0_volume"]
    print(f"  seed 0 volume: min {stats['min']:.4f} max {stats['max']:.4f} mean {stats['mean']:.4f} "
          f"std {stats['std']:.4f}")
