"""Counterfactuals of a projected scan: the same subject re-synthesised under other covariates ("this brain at 80").

A projection (tf3dstylegan.projections) holds the subject's w (and z, when projected in Z) and noise maps under
its own condition. An edit changes only the condition; the noise maps stay the subject's:

- "remap" (a projection in Z): w' = mapping(z, labels'), the conditional generator's own answer for this latent
  under the new condition (what a sweep from a seed does);
- "shift" (any projection): w' = w + mean_k mapping(z_k, labels') - mean_k mapping(z_k, labels) over the
  projector's sample latents z_k: the condition's average displacement in W.

"auto" is remap when the projection holds z, else shift. Given the projected scan, an edit can keep the scan's
residual (what the projection does not reproduce): edit + (scan - reconstruction), so that only the model's change
is applied to the subject's own voxels. bench/bench_counterfactual.py measures the edits against the conditional
demo's ground truth (tf3dstylegan.data.demo.demo_subject). Editing to the projection's own condition gives back its
reconstruction (with the residual: the scan). Volumes are float32 [V, X, Y, Z, C] in [-1, 1].
"""
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from tf3dstylegan import conditions, projector
from tf3dstylegan.data.nifti import save_volume
from tf3dstylegan.io import GAP, PLANES, plane_grid, to_unit_range, write_json_atomic, write_png
from tf3dstylegan.sampling import synthesize, to_numpy

EDITS = ("auto", "remap", "shift")
RANGE_STDS = 2.0  # the training data's range, as the network knows it: its mean +- this many standard deviations
LOW_SCAN_NCC = 0.5  # a scan this unlike its projection's reconstruction (NCC; 0.97-0.99 on the demo) is warned about
SCAN_SLACK = 1e-3  # [0, 1] volumes written as float32 NIfTI read back within this


def require_named(G):
    """ValueError unless G is conditional with saved covariate names (what an edit by name needs)."""
    if not G.config.label_size:
        raise ValueError("this network is unconditional (label_size 0): a counterfactual needs a conditional network")
    if conditions.label_encoding(G) is None:
        raise ValueError(f"this network is {conditions.describe(G)}: a counterfactual needs covariate names")


def check_in_range(G, condition: Dict, extrapolate=False):
    """ValueError for a continuous covariate of {name: value} outside G's training range (mean +- RANGE_STDS
    std of its training data), unless extrapolate."""
    encoding = conditions.label_encoding(G)
    far = {} if extrapolate else encoding.far_values(condition, RANGE_STDS)
    if far:
        name, z = next(iter(far.items()))
        c = encoding.covariates[encoding.names.index(name)]
        low, high = c.mean - RANGE_STDS * c.std, c.mean + RANGE_STDS * c.std
        raise ValueError(f"{name}={condition[name]} is outside the training data's range ({low:.4g} .. {high:.4g}: "
                         f"mean +- {RANGE_STDS:g} std; {z:+.3g} std): --extrapolate allows it")


def edit_conditions(G, subject, changes=None, sweep: Optional[Tuple[str, List]] = None,
                    extrapolate=False) -> Tuple[List[Dict], List[Dict]]:
    """(full conditions, the changed covariates of each) of the edits: the projection's own condition with
    `changes` ({name: value} or 'sex=F') and, with sweep (name, values), covariate `name` at each value.
    ValueError naming an unknown covariate or category, a bad number or a value out of range."""
    require_named(G)
    if isinstance(changes, str):
        changes = conditions.parse_condition(changes)
    changes = dict(changes or {})
    if sweep is not None and sweep[0] in changes:
        raise ValueError(f"covariate {sweep[0]!r} is swept: leave it out of the fixed changes")
    changed = [{sweep[0]: value, **changes} for value in sweep[1]] if sweep is not None else [changes]
    if not changed[0]:
        raise ValueError("no covariate to change: give a new value or a sweep")
    full = [{**subject.condition, **edit} for edit in changed]
    for condition, edit in zip(full, changed):
        conditions.encode_condition(G, condition)  # unknown covariates, categories, numbers
        check_in_range(G, edit, extrapolate)
    return full, changed


def resolve_edit(subject, edit="auto") -> str:
    """'remap' or 'shift' for this projection; ValueError for remap without z."""
    if edit not in EDITS:
        raise ValueError(f"edit must be one of {', '.join(EDITS)}, got {edit!r}")
    if edit == "auto":
        return "remap" if subject.z is not None else "shift"
    if edit == "remap" and subject.z is None:
        raise ValueError("remap re-maps the projected z: this projection was made in W (project with space z), "
                         "use shift")
    return edit


def mean_w(G, labels, num_samples=projector.W_AVG_SAMPLES) -> np.ndarray:
    """float64 [dlatent_size]: the mean w under labels [L] of the projector's sample latents."""
    return projector.mapped_samples(G, projector.sample_latents(G, num_samples), labels).mean(axis=0)


def edited_styles(G, subject, labels, edit="auto", num_samples=projector.W_AVG_SAMPLES) -> np.ndarray:
    """ws [V, num_ws, dlatent_size] of the projected subject under labels [V, L] (see the module docstring)."""
    edit = resolve_edit(subject, edit)
    labels = conditions.batch_labels(G, labels, len(labels))
    if edit == "remap":
        z = np.repeat(subject.z, len(labels), axis=0)                          # [V, latent_size]
        return to_numpy(G.mapping(z, labels)).astype(np.float32)
    conditions_in_order = [np.asarray(label, np.float32) for label in (subject.labels, *labels)]
    means = {}  # each distinct condition's mean w once (the edits may hold the own condition)
    for label in conditions_in_order:
        if label.tobytes() not in means:
            means[label.tobytes()] = mean_w(G, label, num_samples)
    own, *edited = (means[label.tobytes()] for label in conditions_in_order)
    shifts = np.stack(edited) - own                                                 # [V, dlatent_size]
    return (subject.w + shifts[:, np.newaxis, :]).astype(np.float32)


def counterfactuals(G, subject, labels, edit="auto", batch_size=4, num_samples=projector.W_AVG_SAMPLES,
                    residual=None):
    """Volumes [V, X, Y, Z, C] of the projected subject under labels [V, L], with its noise maps; plus `residual`
    [X, Y, Z, C] (the scan minus reconstruction(G, subject): the edits applied to the scan's own voxels)."""
    ws = edited_styles(G, subject, labels, edit, num_samples)
    noise = [np.repeat(n, len(ws), axis=0) for n in subject.noises]
    volumes = synthesize(G, ws, noise_mode="const", noise=noise, batch_size=batch_size)
    return volumes if residual is None else volumes + np.asarray(residual, np.float32)[np.newaxis]


def reconstruction(G, subject, batch_size=4) -> np.ndarray:
    """[X, Y, Z, C]: the projection's own volume, G.synthesis of its w and noise maps."""
    return synthesize(G, subject.w, noise_mode="const", noise=subject.noises, batch_size=batch_size)[0]


def check_scan(G, scan) -> np.ndarray:
    """The projected scan as float32 [X, Y, Z, C] in [-1, 1] (given in [0, 1], as project.py's target.nii.gz);
    ValueError when it is not on G's grid, not finite or not in [0, 1]."""
    scan = np.asarray(scan, np.float32)
    scan = scan[..., np.newaxis] if scan.ndim == 3 else scan
    expected = (*G.img_shape, G.num_channels)
    if scan.shape != expected:
        raise ValueError(f"shape {scan.shape} is not the network's grid {expected}")
    if not np.all(np.isfinite(scan)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scan)))} voxels are NaN or Inf")
    low, high = float(scan.min()), float(scan.max())
    if low < -SCAN_SLACK or high > 1 + SCAN_SLACK:
        raise ValueError(f"values {low:.4g} .. {high:.4g} are not the network's [0, 1]: give the target.nii.gz "
                         "that project.py wrote")
    return scan * 2.0 - 1.0


def edit_names(changed: List[Dict]) -> List[str]:
    """File-name stems 'age-80-sex-M' of the edits' changed covariates; ValueError when two coincide."""
    names = ["-".join(conditions.value_names(name, [value])[0] for name, value in edit.items()) for edit in changed]
    if len(set(names)) != len(names):
        raise ValueError(f"edits {changed} repeat (or are equal to 6 significant digits)")
    return names


def strip(volumes, drange=(-1.0, 1.0)) -> np.ndarray:
    """uint8 image of [V, X, Y, Z, C] volumes (None = black): a column per volume, a row per middle plane."""
    rows = [plane_grid([list(volumes)], plane, drange) for plane in PLANES]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in rows]
    gap = np.zeros((GAP, width), np.uint8)
    return np.concatenate([part for r in rows for part in (gap, r)][1:])


def write_counterfactuals(outdir, names, volumes, reference, voxel_size, edits, info=None,
                          reference_name="projection") -> Path:
    """Per edit `counterfactual-<name>.nii.gz` (float32 [0, 1]) and `difference-<name>.nii.gz` (edit - reference,
    in [0, 1] units), `<reference_name>.nii.gz` (the reference: the projection at its own condition, or the scan
    for edits that keep its residual), `counterfactual.png` (the three
    middle planes of the reference, then each edit), `difference.png` (grey = no change, its range +- the largest
    change) and counterfactual.json (`info` and per edit its condition `edits` [{name: value}], files and largest
    change)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if not (np.all(np.isfinite(volumes)) and np.all(np.isfinite(reference))):
        raise ValueError("the generator produced non-finite voxels (NaN or Inf weights?); nothing written")
    differences = to_unit_range(volumes) - to_unit_range(reference)[np.newaxis]        # [V, X, Y, Z, C]
    save_volume(outdir / f"{reference_name}.nii.gz", to_unit_range(reference)[..., 0], voxel_size)
    for name, volume, difference in zip(names, volumes, differences, strict=True):
        save_volume(outdir / f"counterfactual-{name}.nii.gz", to_unit_range(volume)[..., 0], voxel_size)
        save_volume(outdir / f"difference-{name}.nii.gz", difference[..., 0], voxel_size)
    write_png(outdir / "counterfactual.png", strip([reference, *volumes]))
    largest = float(np.max(np.abs(differences))) or 1.0
    write_png(outdir / "difference.png", strip([np.zeros_like(reference), *differences], (-largest, largest)))
    records = [{"condition": condition, "file": f"counterfactual-{name}.nii.gz",
                "difference": f"difference-{name}.nii.gz",
                "largest_change": float(np.max(np.abs(d)))} for name, condition, d in zip(names, edits, differences)]
    return write_json_atomic(outdir / "counterfactual.json", {**(info or {}), "edits": records})
