"""Counterfactuals against ground truth: edits of projected held-out demo subjects vs the same subjects rendered at
the new age by the conditional demo's own recipe (tf3dstylegan.data.demo.demo_subject).

    python bench/bench_counterfactual.py --network runs/00000-demo --subjects 16 --steps 300
    python bench/bench_counterfactual.py --kimg 20 --subjects 16          # trains the demo model first

Held-out subjects are the conditional demo's indices from --first (no model trained on the 32-subject demo saw
them) at the network's voxel size. Each is projected (--steps) under its true age and sex, then edited by
--years: older when that stays within the demo's 50-90 years, else younger. Per edit method (--edits: remap =
project in Z and re-map under the new label; shift = project in W and add the condition's mean displacement in W):
- effectiveness: the least-squares slope of ventricle volume on age over the subjects' two ages (one intercept per
  subject), edits vs truth, with 95% intervals, and their ratio with a bootstrap interval over subjects;
  and, voxel by voxel, the gain (least-squares coefficient) and NCC of the edit's change map on the true one;
  the same for the partial-volume ventricle volume (data.anatomy.partial_ventricle_volume: continuous, where the
  thresholded volume moves by whole 0.5 ml voxels at 8 mm and is 0 for most demo subjects);
- fidelity: NCC and MSE (in [0, 1]) of the edit with the true subject at the new age, against three baselines: the
  unedited projection, a fresh sample (random latent) at the new age, and the scan itself (no edit at all);
- minimality: mean |change| of the edit outside the voxels the true age change touches (|truth change| > --region),
  against the same inside;
- composition: largest |edit to the subject's own covariates - the projection's reconstruction| (with the
  residual: - the scan).
With --residual each method is also measured as '<method>+residual': the edit applied to the scan's own voxels,
edit + (scan - reconstruction) (generate.py --scan); its change map is the method's, its starting point the scan.
One JSON line per subject and edit method (--per_subject), then one summary line per edit method.
"""
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

flags.DEFINE_string("network", None, "A trained conditional demo network (run folder or .keras); else train one.")
flags.DEFINE_float("kimg", 20.0, "Without --network: thousands of real volumes to train the demo model on.")
flags.DEFINE_integer("subjects", 16, "Held-out subjects.")
flags.DEFINE_integer("first", 1000, "Index of the first held-out demo subject.")
flags.DEFINE_integer("steps", 300, "Projection steps per subject.")
flags.DEFINE_float("years", 20.0, "Size of the age edit.")
flags.DEFINE_list("edits", ["remap", "shift"], "Edit methods to measure.")
flags.DEFINE_bool("residual", True, "Also measure each edit applied to the scan itself (edit + scan - "
                  "reconstruction: generate.py --scan), named '<edit>+residual'.")
flags.DEFINE_float("region", 0.02, "Minimality: a voxel is in the age effect's region when the true change > this.")
flags.DEFINE_integer("bootstrap", 2000, "Bootstrap resamples of the slope ratio's interval.")
flags.DEFINE_bool("per_subject", False, "Also print one line per subject.")
flags.DEFINE_integer("seed", 0, "Seed of the training, the projections and the fresh samples.")
FLAGS = flags.FLAGS
SPACE_OF = {"remap": "z", "shift": "w"}
MEANS = ("change_gain", "change_ncc", "change_outside", "change_inside", "true_change_outside", "region_fraction")


def ncc(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


def trained_network():
    """G_ema of --network, or of a demo model trained here for --kimg on the 32-subject conditional demo."""
    from tf3dstylegan import load_network
    if FLAGS.network:
        return load_network(FLAGS.network).G_ema, FLAGS.network
    from tf3dstylegan.data import demo_dataset
    from tf3dstylegan.training import train
    outdir = tempfile.mkdtemp(prefix="bench-counterfactual-")
    run = train("demo", demo_dataset(voxel_size=8.0, conditional=True), outdir, kimg=FLAGS.kimg, batch=8,
                resume=None, seed=FLAGS.seed, labels=True, log=lambda line: None)
    return load_network(run).G_ema, str(run)


def edited_age(age):
    """age + --years when that stays within the demo's ages, else age - --years."""
    from tf3dstylegan.data.anatomy import AGE_RANGE
    return age + FLAGS.years if age + FLAGS.years <= AGE_RANGE[1] else age - FLAGS.years


def measure_subject(G, index, edits):
    """Per edit method the measurements of one held-out subject (volumes in [0, 1])."""
    from tf3dstylegan import conditions, projector
    from tf3dstylegan import counterfactual as cf
    from tf3dstylegan.data import partial_ventricle_volume, ventricle_volume
    from tf3dstylegan.data.demo import demo_subject, subject_covariates
    from tf3dstylegan.io import to_unit_range
    from tf3dstylegan.projections import ProjectedSubject
    voxel = G.config.voxel_size
    own = subject_covariates(0, index)
    new = {**own, "age": edited_age(own["age"])}
    truth_own, truth_new = (demo_subject(index, c, voxel) for c in (own, new))        # [X, Y, Z] in [0, 1]
    labels_own, labels_new = (conditions.encode_condition(G, c) for c in (own, new))   # [L]
    z = np.random.RandomState([FLAGS.seed, index]).randn(1, G.latent_size).astype(np.float32)
    fresh = to_unit_range(G(z, labels=labels_new[np.newaxis]))[0, ..., 0]
    region = np.abs(truth_new - truth_own) > FLAGS.region
    true_change = ventricle_volume(truth_new, voxel) - ventricle_volume(truth_own, voxel)
    true_partial = partial_ventricle_volume(truth_new, voxel) - partial_ventricle_volume(truth_own, voxel)
    results = {}
    for edit in edits:
        projection = projector.project(G, truth_own[..., np.newaxis] * 2.0 - 1.0, num_steps=FLAGS.steps,
                                       seed=FLAGS.seed, labels=labels_own, space=SPACE_OF[edit])
        subject = ProjectedSubject(w=projection.w, noises=projection.noises, network="", labels=projection.labels,
                                   condition=own, z=projection.z)
        volumes = cf.counterfactuals(G, subject, np.stack([labels_own, labels_new]), edit)   # [2, X, Y, Z, C]
        reconstruction = to_unit_range(projection.reconstruction)[..., 0]
        variants = {edit: volumes}
        if FLAGS.residual:
            residual = truth_own[..., np.newaxis] * 2.0 - 1.0 - projection.reconstruction      # [X, Y, Z, C]
            variants[f"{edit}+residual"] = volumes + residual[np.newaxis]
        for name, edited in variants.items():
            edit_own, edit_new = to_unit_range(edited)[..., 0]
            reference = truth_own if name.endswith("+residual") else reconstruction   # what the edit starts from
            change = np.abs(edit_new - edit_own)
            true_map, edit_map = (truth_new - truth_own).ravel(), (edit_new - edit_own).ravel()   # [X*Y*Z]
            results[name] = {
                "subject": index, "age": own["age"], "new_age": new["age"], "sex": own["sex"],
                "true_change_ml": true_change / 1000.0,
                "edit_change_ml": (ventricle_volume(edit_new, voxel) - ventricle_volume(edit_own, voxel)) / 1000.0,
                "true_partial_ml": true_partial / 1000.0,
                "edit_partial_ml": (partial_ventricle_volume(edit_new, voxel)
                                    - partial_ventricle_volume(edit_own, voxel)) / 1000.0,
                "change_gain": float(edit_map @ true_map / (true_map @ true_map)),
                "change_ncc": ncc(edit_map, true_map),
                "ncc": {"edit": ncc(edit_new, truth_new), "unedited": ncc(reconstruction, truth_new),
                        "fresh_sample": ncc(fresh, truth_new), "scan": ncc(truth_own, truth_new),
                        "projection_vs_own": ncc(reconstruction, truth_own)},
                "mse": {"edit": mse(edit_new, truth_new), "unedited": mse(reconstruction, truth_new),
                        "fresh_sample": mse(fresh, truth_new), "scan": mse(truth_own, truth_new)},
                "change_outside": float(change[~region].mean()), "change_inside": float(change[region].mean()),
                "true_change_outside": float(np.abs(truth_new - truth_own)[~region].mean()),
                "region_fraction": float(region.mean()),
                "composition_max": float(np.max(np.abs(edit_own - reference)))}
    return results


def summary(rows, rng):
    """The summary line of one edit method over subjects' rows."""
    from tf3dstylegan.metrics.effects import slope_interval
    ages = np.array([[r["age"], r["new_age"]] for r in rows])                        # [S, 2]
    groups = np.repeat(np.arange(len(rows)), 2)
    deltas = ages[:, 1] - ages[:, 0]
    effects = {}
    for measure in ("change_ml", "partial_ml"):
        changes = {key: np.array([r[f"{key}_{measure}"] for r in rows]) for key in ("true", "edit")}   # [S]
        fits = {key: slope_interval(ages.ravel(), np.stack([np.zeros_like(c), c], 1).ravel(), groups)
                for key, c in changes.items()}
        picks = rng.integers(0, len(rows), (FLAGS.bootstrap, len(rows)))             # [B, S]
        with np.errstate(divide="ignore", invalid="ignore"):  # resamples without a true change: undefined, counted
            boot = (np.sum(changes["edit"][picks] * deltas[picks], 1)
                    / np.sum(changes["true"][picks] * deltas[picks], 1))
        boot[~np.isfinite(boot)] = np.nan
        effects[measure] = {"slope_true_ml_per_year": fits["true"], "slope_edit_ml_per_year": fits["edit"],
                            "slope_ratio": float(changes["edit"] @ deltas / (changes["true"] @ deltas)),
                            "slope_ratio_95": [float(q) for q in np.nanpercentile(boot, [2.5, 97.5])],
                            "undefined_resamples": int(np.sum(np.isnan(boot)))}
    mean = {name: {k: float(np.mean([r[name][k] for r in rows])) for k in rows[0][name]} for name in ("ncc", "mse")}
    wins = {k: int(np.sum([r["ncc"]["edit"] > r["ncc"][k] for r in rows])) for k in ("unedited", "fresh_sample",
                                                                                      "scan")}
    return {"ventricle_volume": effects["change_ml"], "partial_ventricle_volume": effects["partial_ml"],
            "ncc_mean": mean["ncc"], "mse_mean": mean["mse"], "ncc_edit_beats": wins,
            **{k: float(np.mean([r[k] for r in rows])) for k in MEANS},
            "composition_max": float(np.max([r["composition_max"] for r in rows]))}


def main(argv):
    started = time.time()
    G, network = trained_network()
    rows = {}
    for index in range(FLAGS.first, FLAGS.first + FLAGS.subjects):
        for edit, row in measure_subject(G, index, FLAGS.edits).items():
            rows.setdefault(edit, []).append(row)
            if FLAGS.per_subject:
                print(json.dumps({"edit": edit, **row}), flush=True)
    rng = np.random.default_rng(FLAGS.seed)
    for edit, edit_rows in rows.items():
        print(json.dumps({"edit": edit, "network": str(Path(network)), "subjects": len(edit_rows),
                          "steps": FLAGS.steps, "years": FLAGS.years, "voxel_size": G.config.voxel_size,
                          **summary(edit_rows, rng), "seconds": round(time.time() - started)}), flush=True)


if __name__ == "__main__":
    app.run(main)
