"""generate.py --projected: counterfactuals of a projected scan (tf3dstylegan.counterfactual).

  {prog} --network PATH --projected proj/projected_w.npz --sweep age=50:90:5 [--cond sex=F] --outdir out/
  {prog} --network PATH --projected proj/projected_w.npz --cond age=80 --outdir out/

The covariates not given keep the projection's own values. Writes counterfactual-<name>-<value>.nii.gz and
difference-<name>-<value>.nii.gz per edit, projection.nii.gz (with --scan: scan.nii.gz), counterfactual.png,
difference.png and counterfactual.json. --scan proj/target.nii.gz (the scan as project.py wrote it) applies each
edit to the scan's own voxels: edit + (scan - the projection's reconstruction).
"""
from pathlib import Path

from absl import flags

from tf3dstylegan.cli import flag_error

EDITS = ("auto", "remap", "shift")  # tf3dstylegan.counterfactual.EDITS, named here without importing the networks


def define_flags(fv):
    flags.DEFINE_string("projected", None, "Counterfactuals: a projected_w.npz (project.py) to re-synthesise under "
                        "other covariates, given by --cond (the ones to change) and/or --sweep.", flag_values=fv)
    flags.DEFINE_enum("edit", "auto", list(EDITS), "Counterfactuals: remap the projected z under the new condition, "
                      "shift w by the condition's mean displacement in W, or auto (remap for a projection in Z, "
                      "else shift).", flag_values=fv)
    flags.DEFINE_string("scan", None, "Counterfactuals: the projected scan as project.py wrote it (its outdir's "
                        "target.nii.gz); each edit then keeps the scan's residual: edit + (scan - reconstruction).",
                        flag_values=fv)
    flags.DEFINE_bool("extrapolate", False, "Counterfactuals: allow covariate values outside the training data's "
                      "range (its mean +- 2 standard deviations).", flag_values=fv)


def check_flags(fv):
    """The counterfactual flags, before the network is loaded."""
    if not fv.projected:
        for name in ("edit", "extrapolate", "scan"):
            if fv[name].present:
                raise flag_error(name, "needs --projected")
        return
    if fv.seeds or fv.interp or fv.row_seeds or fv.col_seeds:
        raise flag_error("projected", "runs without seeds: give --seeds, style mixing or interpolation in another run")
    if fv.cond_vector is not None:
        raise flag_error("cond_vector", "a counterfactual changes covariates by name: give them with --cond")
    if not (fv.cond or fv.sweep):
        raise flag_error("projected", "give the covariates to change: --cond age=80 and/or --sweep age=50:90:5")
    if fv.trunc != 1.0 or fv.trunc_cutoff is not None or fv.noise_mode != "const":
        raise flag_error("projected", "re-synthesises the projection's own w and noise maps: --trunc, "
                         "--trunc_cutoff and --noise_mode do not apply")
    for name in ("projected", "scan"):
        if fv[name].value is not None and not Path(fv[name].value).is_file():
            raise flag_error(name, f"{fv[name].value}: no such file")


def run(G, fv):
    """Load and check the projection against G, check every edit, then write the counterfactuals."""
    from tf3dstylegan import conditions
    from tf3dstylegan import counterfactual as cf
    from tf3dstylegan.projections import load_projection
    try:
        cf.require_named(G)
    except ValueError as err:
        raise flag_error("network", err) from None
    try:
        subject = load_projection(fv.projected, G)
    except ValueError as err:
        raise flag_error("projected", err) from None
    try:
        edit = cf.resolve_edit(subject, fv.edit)
    except ValueError as err:
        raise flag_error("edit", err) from None
    changes = None
    if fv.cond:
        try:
            changes = conditions.parse_condition(fv.cond)
            cf.edit_conditions(G, subject, changes, extrapolate=fv.extrapolate)
        except ValueError as err:
            raise flag_error("cond", err) from None
    sweep = None
    if fv.sweep:
        try:
            sweep = conditions.parse_sweep(fv.sweep, conditions.label_encoding(G))
        except ValueError as err:
            raise flag_error("sweep", err) from None
        if sweep[0] in (changes or {}):
            raise flag_error("cond", f"covariate {sweep[0]!r} is swept: leave it out of --cond")
    try:
        full, changed = cf.edit_conditions(G, subject, changes, sweep, fv.extrapolate)
    except ValueError as err:
        raise flag_error("sweep", err) from None
    import numpy as np
    scan = None
    if fv.scan:
        from tf3dstylegan.data.volumes import DataError, check_volume, read_volume
        try:
            scan = cf.check_scan(G, check_volume(fv.scan, read_volume(fv.scan)[0]))
        except DataError as err:
            raise flag_error("scan", err) from None
        except ValueError as err:
            raise flag_error("scan", f"{fv.scan}: {err}") from None
    labels = np.stack([subject.labels] + [conditions.encode_condition(G, condition) for condition in full])
    # One synthesis: the own-condition volume is the projection's reconstruction, the residual's reference.
    reference, *volumes = cf.counterfactuals(G, subject, labels, edit, fv.batch_size)
    if scan is not None:
        similarity = float(np.corrcoef(scan.ravel(), reference.ravel())[0, 1])
        if not similarity >= cf.LOW_SCAN_NCC:
            print(f"warning: --scan {fv.scan}: NCC {similarity:.3f} with the projection's reconstruction: is it the "
                  "scan that was projected?")
        residual = scan - reference
        volumes = [volume + residual for volume in volumes]
        reference = scan
    volumes = np.stack(volumes)
    info = {"network": str(fv.network), "projected": str(fv.projected), "projection_condition": subject.condition,
            "space": subject.space, "edit": edit, "scan": None if scan is None else str(fv.scan),
            "scan_ncc_with_reconstruction": None if scan is None else similarity}
    cf.write_counterfactuals(fv.outdir, cf.edit_names(changed), volumes, reference, G.config.voxel_size, full, info,
                             reference_name="projection" if scan is None else "scan")
    on = "" if scan is None else " on the scan"
    print(f"{len(volumes)} counterfactuals of {fv.projected} ({edit}{on}; projected at "
          f"{','.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in subject.condition.items())}) "
          f"-> {fv.outdir}")
