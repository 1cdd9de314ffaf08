"""Generate volumes, style-mixing grids and interpolations with a trained generator.

  {prog} --network PATH --seeds 0-9 [--trunc 0.7] [--trunc_cutoff N] [--noise_mode const] --outdir out/
  {prog} --network PATH --row_seeds 1,2 --col_seeds 3-5 --col_styles 5-9 --outdir out/
  {prog} --network PATH --interp 0,1 [--frames 10] [--space w|z] --outdir out/
  {prog} --network PATH --seeds 0-3 --sweep age=50:90:9 [--cond sex=F] --outdir out/
  {prog} --network PATH --projected proj/projected_w.npz --sweep age=50:90:5 [--cond sex=F] --outdir out/

--network takes an original .pkl, a .keras file or a training run folder (its G_ema). A conditional network
needs its condition: --cond age=72,sex=F (covariates by name, encoded as in training) or --cond_vector 0.1,0,1
(the raw label vector, for networks without saved covariate names); it applies to every volume, both ends of
an interpolation and both seeds of a style mix. --sweep varies one covariate (start:stop:count, both ends
included, or a list of values or categories) with everything else fixed: a row of volumes per seed, written
as sweep-seed<seed>-<name>-<value>.nii.gz, sweep_<plane>.png and sweep.json. --projected re-synthesises a
projected scan (project.py) under other covariates (--cond: the ones to change; --sweep; the rest keep the
projection's own values): counterfactual-<name>-<value>.nii.gz, difference-<name>-<value>.nii.gz (against the
projection's own condition), counterfactual.png, difference.png and counterfactual.json. Files of an earlier run
in --outdir are not replaced unless --overwrite is given.
"""
import math

from absl import flags

from tf3dstylegan.cli import CommandError, flag_error
from tf3dstylegan.commands import counterfactual


MAX_PSI = 2.0  # |psi| beyond this extrapolates w more than twice its distance from the average: nothing trained


def check_psi(name, psi):
    """CommandError naming flag `name` unless psi is a finite number in [-MAX_PSI, MAX_PSI]."""
    if not (math.isfinite(psi) and abs(psi) <= MAX_PSI):
        raise flag_error(name, f"must be a finite number in [{-MAX_PSI:g}, {MAX_PSI:g}], got {psi}")


def define_flags(fv):
    flags.DEFINE_string("network", None, "Network: original .pkl, .keras file or run folder.", flag_values=fv)
    flags.DEFINE_string("outdir", None, "Output folder.", flag_values=fv)
    flags.DEFINE_string("seeds", None, "Seeds to generate, e.g. 0-9 or 1,5,7.", flag_values=fv)
    flags.DEFINE_float("trunc", 1.0, "Truncation psi (1 = none).", flag_values=fv)
    flags.DEFINE_integer("trunc_cutoff", None, "Truncate only style layers below this index (default: all).",
                         flag_values=fv)
    flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"],
                      "Noise maps: the stored ones, drawn from each seed, or none.", flag_values=fv)
    flags.DEFINE_string("row_seeds", None, "Style mixing: seeds of the rows (the base styles).", flag_values=fv)
    flags.DEFINE_string("col_seeds", None, "Style mixing: seeds of the columns.", flag_values=fv)
    flags.DEFINE_string("col_styles", "0-6", "Style mixing: style layers taken from the column seed, e.g. 5-9.",
                        flag_values=fv)
    flags.DEFINE_list("interp", None, "Interpolation: two seeds A,B.", flag_values=fv)
    flags.DEFINE_integer("frames", 10, "Interpolation: number of frames, endpoints included.", flag_values=fv)
    flags.DEFINE_enum("space", "w", ["w", "z"], "Interpolation: linear in W or spherical in Z.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 4, "Volumes per forward pass.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("slab_size", 0, "Compute the full-resolution level in slabs of this many voxels along the "
                         "first axis: less memory, same volumes, slower. 0: whole.", lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace files of an earlier run in --outdir.", flag_values=fv)
    define_condition_flags(fv)
    flags.DEFINE_string("sweep", None, "Covariate sweep over --seeds: name=start:stop:count (e.g. age=50:90:9), "
                        "name=v1,v2,... or a categorical name=A,B; the other covariates from --cond.", flag_values=fv)
    counterfactual.define_flags(fv)


def define_condition_flags(fv):
    """--cond and --cond_vector (also used by project)."""
    flags.DEFINE_string("cond", None, "Condition of a conditional network by covariate name, e.g. age=72,sex=F.",
                        flag_values=fv)
    flags.DEFINE_string("cond_vector", None, "Condition as the raw label vector, e.g. 0.1,0,1 (networks without "
                        "saved covariate names).", flag_values=fv)


def check_condition_flags(fv):
    """Syntax of --cond and --cond_vector, before the network is loaded."""
    from tf3dstylegan.conditions import parse_condition, parse_vector
    if fv.cond and fv.cond_vector:
        raise flag_error("cond_vector", "give --cond or --cond_vector, not both")
    for name, parse in (("cond", parse_condition), ("cond_vector", parse_vector)):
        if fv[name].value is not None:
            try:
                parse(fv[name].value)
            except ValueError as err:
                raise flag_error(name, err) from None


def condition_labels(G, fv, sweeping=False):
    """The label vector [L] of --cond / --cond_vector for G (None when G is unconditional); with `sweeping`
    the fixed condition {name: value} of --cond instead. CommandError naming the flag when they do not fit G."""
    from tf3dstylegan import conditions
    given = "cond" if fv.cond is not None else "cond_vector" if fv.cond_vector is not None else None
    if not G.config.label_size:
        if given or sweeping:
            raise flag_error(given or "sweep", "this network is unconditional (label_size 0): it takes no condition")
        return None
    encoding = conditions.label_encoding(G)
    if given is None and not sweeping:
        wanted = (f"--cond {conditions.example(encoding)}" if encoding
                  else f"--cond_vector with its {G.config.label_size} label values")
        raise flag_error("cond", f"this network is {conditions.describe(G)}: give {wanted}")
    if sweeping and encoding is None:
        raise flag_error("sweep", f"this network is {conditions.describe(G)}: a sweep needs covariate names")
    if given == "cond" and encoding is None:
        raise flag_error("cond", f"this network is {conditions.describe(G)}: give --cond_vector with its "
                         f"{G.config.label_size} label values")
    if sweeping:
        if given == "cond_vector":
            raise flag_error("cond_vector", "a sweep needs the fixed covariates by name: give them with --cond")
        return conditions.parse_condition(fv.cond) if fv.cond else {}
    try:
        if given == "cond":
            labels = conditions.encode_condition(G, fv.cond)
            warn_far(encoding, conditions.parse_condition(fv.cond), "--cond")
            return labels
        return conditions.check_vector(G, conditions.parse_vector(fv.cond_vector))
    except ValueError as err:
        raise flag_error(given, err) from None


def warn_far(encoding, values, flag):
    """A warning line for each continuous covariate of {name: value} far outside the training data."""
    for name, z in encoding.far_values(values).items():
        covariate = encoding.covariates[encoding.names.index(name)]
        print(f"warning: {flag}: {name}={values[name]} is {abs(z):.3g} standard deviations from the training data's "
              f"mean ({covariate.mean:.4g}, std {covariate.std:.4g}): the network never saw such a condition")


def _seeds(name, text):
    from tf3dstylegan.generate import parse_int_list
    try:
        return parse_int_list(text)
    except ValueError as err:
        raise flag_error(name, err) from None


def check_flags(fv):
    """Every flag checked before any work: returns the parsed seed lists."""
    if args_missing := [n for n in ("network", "outdir") if not fv[n].value]:
        raise flag_error(args_missing[0], "required")
    if not (fv.seeds or fv.interp or fv.row_seeds or fv.col_seeds or fv.projected):
        raise CommandError("nothing to do: give --seeds, --row_seeds/--col_seeds, --interp or --projected")
    check_condition_flags(fv)
    counterfactual.check_flags(fv)
    if fv.sweep is not None and not (fv.seeds or fv.projected):
        raise flag_error("sweep", "needs --seeds (one row of volumes per seed)")
    if fv.sweep is not None and (fv.interp or fv.row_seeds or fv.col_seeds):
        raise flag_error("sweep", "runs with --seeds alone: give style mixing or interpolation in another run")
    if bool(fv.row_seeds) != bool(fv.col_seeds):
        raise flag_error("row_seeds" if not fv.row_seeds else "col_seeds", "style mixing needs both --row_seeds "
                         "and --col_seeds")
    check_psi("trunc", fv.trunc)
    if fv.trunc_cutoff is not None and fv.trunc_cutoff < 0:
        raise flag_error("trunc_cutoff", f"must be >= 0, got {fv.trunc_cutoff}")
    if fv.interp and len(fv.interp) != 2:
        raise flag_error("interp", f"expected two seeds A,B, got {','.join(fv.interp)}")
    if fv.interp and fv.frames < 2:
        raise flag_error("frames", f"need at least 2 frames, got {fv.frames}")
    parsed = dict(seeds=_seeds("seeds", fv.seeds) if fv.seeds else None,
                  rows=_seeds("row_seeds", fv.row_seeds) if fv.row_seeds else None,
                  cols=_seeds("col_seeds", fv.col_seeds) if fv.col_seeds else None,
                  styles=_seeds("col_styles", fv.col_styles),
                  interp=[_seeds("interp", s)[0] for s in fv.interp] if fv.interp else None)
    from pathlib import Path
    outdir = Path(fv.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise flag_error("outdir", f"{outdir} exists and is not a folder")
    if outdir.is_dir() and any(outdir.iterdir()) and not fv.overwrite:
        raise flag_error("outdir", f"{outdir} already holds files; give --overwrite to replace them, or choose "
                         "an empty folder")
    return parsed


def main(fv, args):
    if args:
        raise CommandError(f"unexpected arguments: {' '.join(args)}")
    parsed = check_flags(fv)
    import tf3dstylegan
    from tf3dstylegan import generate as gen
    G = tf3dstylegan.load_network(fv.network).G_ema
    if fv.trunc_cutoff is not None and fv.trunc_cutoff > G.num_ws:
        raise flag_error("trunc_cutoff", f"this network has {G.num_ws} style layers, got {fv.trunc_cutoff}")
    opts = dict(psi=fv.trunc, noise_mode=fv.noise_mode, cutoff=fv.trunc_cutoff, batch_size=fv.batch_size,
                slab_size=fv.slab_size)
    voxel_size = G.config.voxel_size
    if fv.projected:
        return counterfactual.run(G, fv)
    if fv.sweep is not None:
        return run_sweep(G, fv, parsed["seeds"], opts)
    labels = condition_labels(G, fv)
    if parsed["seeds"] is not None:
        seeds = parsed["seeds"]
        batches = gen.generated_batches(G, seeds, labels=labels, **opts)
        written = gen.write_generated_batches(fv.outdir, batches, voxel_size, gen.montage_columns(len(seeds)))
        print(f"{written} volumes -> {fv.outdir}")
    if parsed["rows"] is not None:
        try:
            styles = gen.check_styles(G, parsed["styles"])
        except ValueError as err:
            raise flag_error("col_styles", err) from None
        mix = gen.style_mix(G, parsed["rows"], parsed["cols"], styles, labels=labels, **opts)
        gen.write_style_mix(fv.outdir, parsed["rows"], parsed["cols"], *mix, voxel_size)
        print(f"{len(parsed['rows'])}x{len(parsed['cols'])} style mixes -> {fv.outdir}")
    if parsed["interp"] is not None:
        seed_a, seed_b = parsed["interp"]
        frames = gen.interpolate(G, seed_a, seed_b, fv.frames, fv.space, labels=labels, **opts)
        gen.write_interpolation(fv.outdir, seed_a, seed_b, frames, voxel_size, fv.space)
        print(f"{len(frames)} interpolation frames ({fv.space}) -> {fv.outdir}")


def run_sweep(G, fv, seeds, opts):
    """--sweep: every value checked against G's encoding, then one row of volumes per seed."""
    from tf3dstylegan import conditions
    from tf3dstylegan import generate as gen
    fixed = condition_labels(G, fv, sweeping=True)
    try:
        name, values = conditions.parse_sweep(fv.sweep, conditions.label_encoding(G))
    except ValueError as err:
        raise flag_error("sweep", err) from None
    try:
        conditions.sweep_labels(G, name, values, fixed)
    except ValueError as err:
        raise flag_error("cond", err) from None
    encoding = conditions.label_encoding(G)
    for value in (values[0], values[-1]) if encoding.covariates[encoding.names.index(name)].kind == "continuous" \
            else ():
        warn_far(encoding, {name: value}, "--sweep")
    written = gen.write_sweep(fv.outdir, name, values, gen.sweep_batches(G, seeds, name, values, fixed, **opts),
                              G.config.voxel_size, fixed)
    print(f"{len(written)}x{len(values)} sweep of {name} -> {fv.outdir}")
