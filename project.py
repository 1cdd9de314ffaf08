"""Project a volume into a trained generator's latent space (spec §7.2, paper §2.1).

  python project.py --network PATH --target scan.nii.gz --outdir out/ [--steps 1000] [--w-plus] [--seed 0]
        [--normalize none|minmax|percentile] [--resample auto|always|never]

The target is read and resampled onto the network's grid by the dataset tool's functions. Writes
projected_w.npz (w [1, num_ws, w_dim], noise0..noiseN), target.nii.gz, reconstruction.nii.gz,
projection.png (target beside reconstruction, three middle planes) and report.json (MSE, PSNR, SSIM in [0, 1]).
"""
import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("network", None, "Network: legacy .pkl, .keras file or run folder.")
flags.DEFINE_string("target", None, "Volume to project (.nii, .nii.gz, .npz vol_data).")
flags.DEFINE_string("outdir", None, "Output folder.")
flags.DEFINE_integer("steps", 1000, "Optimisation steps.")
flags.DEFINE_boolean("w_plus", False, "Optimise one w per style layer (W+) instead of one w (W).")
flags.DEFINE_integer("seed", 0, "Seed of the initial noise maps and the w perturbation.")
flags.DEFINE_enum("normalize", "none", ["none", "minmax", "percentile"],
                  "Target intensity to [0, 1] as the dataset tool (use what the training data used).")
flags.DEFINE_enum("resample", "auto", ["auto", "always", "never"],
                  "Resample onto the network grid: auto = only when the shape differs.")
FLAGS = flags.FLAGS


class ProgressBar:
    """`[#####.....] step/total loss L` on stderr, redrawn at most every 0.2 s."""

    def __init__(self, width=30):
        self.width, self.last = width, 0.0

    def __call__(self, step, total, loss):
        now = time.monotonic()
        if step < total and now - self.last < 0.2:
            return
        self.last = now
        filled = self.width * step // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {step}/{total} loss {loss:.4g}")
        if step == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def write_npz(path, **arrays):
    import numpy as np
    tmp = Path(f"{path}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"unexpected arguments: {' '.join(argv[1:])}")
    if not (FLAGS.network and FLAGS.target and FLAGS.outdir):
        sys.exit("--network, --target and --outdir are required")
    if FLAGS.steps < 1:
        sys.exit(f"--steps: must be >= 1, got {FLAGS.steps}")
    import numpy as np
    import tf3dstylegan
    from tf3dstylegan import projector
    from tf3dstylegan.data.nifti import save_volume
    from tf3dstylegan.generate import to_data_range
    from tf3dstylegan.training.preview import preview_grid, write_png

    try:
        G = tf3dstylegan.load_network(FLAGS.network).G_ema
    except (OSError, ValueError) as err:
        sys.exit(str(err) if str(FLAGS.network) in str(err) else f"{FLAGS.network}: {err}")
    resample = {"auto": None, "always": True, "never": False}[FLAGS.resample]
    try:
        target = projector.load_target(FLAGS.target, G, normalize=FLAGS.normalize, resample=resample)
    except ValueError as err:  # DataError: '<file>: <problem>'
        sys.exit(str(err))
    result = projector.project(G, target, num_steps=FLAGS.steps, w_plus=FLAGS.w_plus, seed=FLAGS.seed,
                               on_step=ProgressBar())
    outdir = Path(FLAGS.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    write_npz(outdir / "projected_w.npz", w=result.w, **{f"noise{i}": n for i, n in enumerate(result.noises)})
    save_volume(outdir / "target.nii.gz", to_data_range(target)[..., 0], G.config.voxel_size)
    save_volume(outdir / "reconstruction.nii.gz", to_data_range(result.reconstruction)[..., 0],
                G.config.voxel_size)
    write_png(outdir / "projection.png", preview_grid(np.stack([target, result.reconstruction]), 2))
    metrics = projector.reconstruction_metrics(target, result.reconstruction)
    metrics["psnr"] = metrics["psnr"] if np.isfinite(metrics["psnr"]) else None  # identical volumes: no PSNR
    report = {"network": str(FLAGS.network), "target": str(FLAGS.target), "steps": FLAGS.steps,
              "w_plus": FLAGS.w_plus, "seed": FLAGS.seed, "final_loss": float(result.losses[-1]), **metrics}
    tmp = outdir / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, outdir / "report.json")
    print(f"MSE {metrics['mse']:.6g}  PSNR {metrics['psnr'] or float('inf'):.2f} dB  SSIM {metrics['ssim']:.4f} -> {outdir}")


if __name__ == "__main__":
    from tf3dstylegan.generate import underscore_flag_names
    app.run(main, argv=underscore_flag_names(sys.argv))
