"""Project a scan into a generator's latent space: find W (or W+) and the noise maps that reproduce it.

  {prog} --network PATH --target scan.nii.gz --outdir proj/ [--steps 1000] [--w_plus | --space z]
      [--cond age=72,sex=F]

A conditional network projects under the scan's known condition (--cond by covariate name or --cond_vector,
as generate); --space z projects into the mapping network's input instead of W, so that generate.py
--projected can re-map the scan under another condition. Writes projected_w.npz (w, noise maps, labels, the
condition, z, the network's fingerprint), target.nii.gz, reconstruction.nii.gz, projection.png and report.json.
"""
import os
from pathlib import Path

from absl import flags

from tf3dstylegan.cli import CommandError, flag_error
from tf3dstylegan.commands.generate import check_condition_flags, condition_labels, define_condition_flags


def define_flags(fv):
    flags.DEFINE_string("network", None, "Network: original .pkl, .keras file or run folder.", flag_values=fv)
    flags.DEFINE_string("target", None, "Volume to project (.nii, .nii.gz, .npz vol_data).", flag_values=fv)
    flags.DEFINE_string("outdir", None, "Output folder.", flag_values=fv)
    flags.DEFINE_integer("steps", 1000, "Optimisation steps.", flag_values=fv)
    flags.DEFINE_boolean("w_plus", False, "Optimise one w per style layer (W+) instead of one w (W).", flag_values=fv)
    flags.DEFINE_enum("space", "w", ["w", "z"], "Optimise w (W, or W+ with --w_plus) or the mapping network's "
                      "input z (for counterfactuals by re-mapping: generate.py --projected).", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the initial noise maps and the w perturbation.", flag_values=fv)
    flags.DEFINE_enum("normalize", None, ["none", "minmax", "percentile"],
                      "Target intensity to [0, 1] as the dataset tool (default: what the network's training data "
                      "used, recorded with it; none when unknown).", flag_values=fv)
    flags.DEFINE_enum("resample", "auto", ["auto", "always", "never"],
                      "Resample onto the network grid: auto = only when the shape differs.", flag_values=fv)
    define_condition_flags(fv)


def main(fv, args):
    if args:
        raise CommandError(f"unexpected arguments: {' '.join(args)}")
    for name in ("network", "target", "outdir"):
        if not fv[name].value:
            raise flag_error(name, "required")
    if fv.steps < 1:
        raise flag_error("steps", f"must be >= 1, got {fv.steps}")
    if fv.space == "z" and fv.w_plus:
        raise flag_error("w_plus", "W+ is a space of ws: give --w_plus or --space z, not both")
    check_condition_flags(fv)
    if not Path(fv.target).is_file():
        raise flag_error("target", f"{fv.target}: no such file")
    outdir = Path(fv.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise flag_error("outdir", f"{outdir} exists and is not a folder")
    writable = next(p for p in (outdir.absolute(), *outdir.absolute().parents) if p.exists())
    if not os.access(writable, os.W_OK | os.X_OK):  # say so before the projection, not after it
        raise flag_error("outdir", f"{outdir}: cannot be written ({writable} is read-only)")
    import numpy as np
    import tf3dstylegan
    from tf3dstylegan import projector
    from tf3dstylegan.projections import network_fingerprint, save_projection
    from tf3dstylegan.data.nifti import save_volume
    from tf3dstylegan.io import preview_grid, progress_bar, to_unit_range, write_json_atomic, write_png
    G = tf3dstylegan.load_network(fv.network).G_ema
    labels = condition_labels(G, fv)
    resample = {"auto": None, "always": True, "never": False}[fv.resample]
    if fv.normalize is None:
        recorded = G.config.data_normalize
        print(f"--normalize {recorded or 'none'} "
              f"({'as the training data' if recorded else 'the training data did not record its normalisation'})")
    target = projector.load_target(fv.target, G, normalize=fv.normalize, resample=resample, warn=print)
    progress = progress_bar(fv.steps, stateful_metrics=["loss"])
    result = projector.project(G, target, num_steps=fv.steps, w_plus=fv.w_plus, seed=fv.seed, labels=labels,
                               space=fv.space,
                               on_step=lambda step, total, loss: progress.update(step, [("loss", loss)]))
    if not (np.all(np.isfinite(result.reconstruction)) and np.all(np.isfinite(result.w))):
        raise CommandError(f"{fv.network}: the projection diverged (non-finite values); nothing written")
    outdir.mkdir(parents=True, exist_ok=True)
    save_projection(outdir / "projected_w.npz", G, result)
    save_volume(outdir / "target.nii.gz", to_unit_range(target)[..., 0], G.config.voxel_size)
    save_volume(outdir / "reconstruction.nii.gz", to_unit_range(result.reconstruction)[..., 0],
                G.config.voxel_size)
    write_png(outdir / "projection.png", preview_grid(np.stack([target, result.reconstruction]), 2))
    metrics = projector.reconstruction_metrics(target, result.reconstruction)
    metrics["psnr"] = metrics["psnr"] if np.isfinite(metrics["psnr"]) else None  # identical volumes: no PSNR
    write_json_atomic(outdir / "report.json", {
        "network": str(fv.network), "network_fingerprint": network_fingerprint(G), "target": str(fv.target),
        "steps": fv.steps, "space": fv.space, "w_plus": fv.w_plus,
        "seed": fv.seed, "final_loss": float(result.losses[-1]), **metrics,
        **({} if labels is None else {"condition": fv.cond or fv.cond_vector, "labels": labels.tolist()})})
    print(f"MSE {metrics['mse']:.6g}  PSNR {metrics['psnr'] or float('inf'):.2f} dB  SSIM {metrics['ssim']:.4f} "
          f"-> {outdir}")
