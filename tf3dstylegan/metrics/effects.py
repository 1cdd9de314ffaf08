"""Covariate effect check: the least-squares slope of a measure (ventricle volume, ml) against a continuous
covariate (age), in real volumes and in generated ones, each with its 95 % confidence interval.

Real: every real volume (of the group) against its covariate value. Generated: `ceil(num / steps)` latents
(the first latents of the metrics' seed), each generated at `steps` covariate values spread evenly over the
real values' range, the other covariates those of one real label row per latent; the slope is the
within-latent one (fixed effects per latent, which with every latent at the same values equals the pooled
least-squares slope), its standard error with n - latents - 1 degrees of freedom. Interval: slope +-
t(0.975, dof) * standard error, as scipy.stats.linregress's standard error gives for one group.
"""
import dataclasses

import numpy as np
from scipy import stats

from tf3dstylegan.data import anatomy
from tf3dstylegan.data.table import CONTINUOUS
from tf3dstylegan.io import to_unit_range
from tf3dstylegan.metrics import groups, labelled

MEASURES = {"ventricle_volume": "ml", "partial_ventricle_volume": "ml"}  # measure -> unit (see measure_volumes)
DEFAULT_STEPS = 5
MAX_STEPS = 1000  # covariate values per latent (generated volumes: about max(num, steps))
MIN_VOLUMES = 3  # a slope with one degree of freedom
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Effect:
    """The measure and the continuous covariate it is regressed on."""

    covariate: str
    measure: str = "ventricle_volume"


def parse_effect(text) -> Effect:
    """'age' or 'age:ventricle_volume' -> Effect; ValueError for another form or an unknown measure."""
    name, colon, measure = (s.strip() for s in str(text).partition(":"))
    if not name or (colon and not measure):
        raise ValueError(f"expected COVARIATE or COVARIATE:MEASURE (age:ventricle_volume), got {text!r}")
    measure = measure or "ventricle_volume"
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r} (measures: {', '.join(MEASURES)})")
    return Effect(name, measure)


def check_effect(effect, encoding):
    """ValueError unless the covariate is a continuous covariate of `encoding` (listing the names)."""
    if effect.covariate not in encoding.names:
        raise ValueError(f"unknown covariate {effect.covariate!r} (covariates: {', '.join(encoding.names)})")
    if encoding.kinds[encoding.names.index(effect.covariate)] != CONTINUOUS:
        continuous = [c.name for c in encoding.covariates if c.kind == CONTINUOUS]
        raise ValueError(f"covariate {effect.covariate!r} is categorical; the effect needs a continuous one "
                         f"({', '.join(continuous) or 'none in this data'})")


def slope_interval(x, y, groups_of=None, level=LEVEL) -> dict:
    """Least-squares slope of y [N] on x [N] with its `level` confidence interval: {slope, lo, hi, stderr, n}.

    groups_of (int [N] or None): fit one intercept per group (fixed effects) and one common slope."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if groups_of is None:
        groups_of = np.zeros(len(x), np.int64)
    _, groups_of = np.unique(groups_of, return_inverse=True)
    counts = np.bincount(groups_of)
    x_c = x - (np.bincount(groups_of, x) / counts)[groups_of]  # [N] centred within each group
    y_c = y - (np.bincount(groups_of, y) / counts)[groups_of]
    dof = len(x) - len(counts) - 1
    sxx = float(x_c @ x_c)
    if dof < 1 or sxx <= 1e-12 * max(1.0, float(x @ x)):
        raise ValueError(f"a slope needs at least {len(counts) + 2} points and distinct covariate values")
    slope = float(x_c @ y_c) / sxx
    residual = y_c - slope * x_c
    stderr = float(np.sqrt(residual @ residual / dof / sxx))
    half_width = float(stats.t.ppf(0.5 + level / 2.0, dof)) * stderr
    return {"slope": slope, "lo": slope - half_width, "hi": slope + half_width, "stderr": stderr, "n": len(x)}


def measure_volumes(volumes, voxel_size, measure="ventricle_volume") -> np.ndarray:
    """float64 [b]: the measure of volumes [b, X, Y, Z, C] in [-1, 1] (a data.anatomy ventricle volume, in ml)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r} (measures: {', '.join(MEASURES)})")
    unit = to_unit_range(volumes)
    return np.array([getattr(anatomy, measure)(v, voxel_size) / 1000.0 for v in unit])


def _generate(G, z, labels, batch_size, truncation_psi, noise_mode):
    from tf3dstylegan.sampling import sampler
    sample = sampler(G, truncation_psi, noise_mode)
    for start in range(0, len(z), batch_size):
        yield sample(z[start:start + batch_size], labels[start:start + batch_size])


def _slope_entries(prefix, fit):
    return {f"{prefix}slope": fit["slope"], f"{prefix}slope_lo": fit["lo"], f"{prefix}slope_hi": fit["hi"],
            f"{prefix}slope_n": float(fit["n"]), f"{prefix}slope_stderr": fit["stderr"]}


def covariate_effect(G, data, effect, num=64, batch_size=8, seed=0, truncation_psi=1.0, noise_mode="const",
                     steps=DEFAULT_STEPS, keep=None) -> dict:
    """{covariate, measure, unit, steps, latents, slope and real_slope (each with _lo, _hi, _n, _stderr)} of
    conditional generator G (its voxel size) and LabelledData `data`; keep: labels [b, L] -> bool [b] (a
    group's rows; None: all). ValueError when there are too few volumes or covariate values."""
    encoding = data.require_names()
    check_effect(effect, encoding)
    voxel_size = G.config.voxel_size
    if not 2 <= steps <= MAX_STEPS:
        raise ValueError(f"the effect needs 2 to {MAX_STEPS} covariate values per latent, got steps={steps}")
    values, measured = [], []
    for volumes, labels in data.batches(batch_size, keep):
        values.append(groups.covariate_values(labels, encoding, effect.covariate))
        measured.append(measure_volumes(volumes, voxel_size, effect.measure))
    values, measured = (np.concatenate(v) if v else np.zeros([0]) for v in (values, measured))
    if len(values) < MIN_VOLUMES:
        raise ValueError(f"{len(values)} real volumes, the effect needs {MIN_VOLUMES}")
    result = {"covariate": effect.covariate, "measure": effect.measure,
              "unit": f"{MEASURES[effect.measure]} per unit of {effect.covariate}"}
    result.update(_slope_entries("real_", slope_interval(values, measured)))
    rows = data.labels if keep is None else data.labels[np.asarray(keep(data.labels), bool)]
    num_latents = max(1, -(-num // steps))
    sweep = np.linspace(values.min(), values.max(), steps)  # [steps]
    base = rows[np.random.default_rng([seed, 2]).integers(0, len(rows), num_latents)]
    requested = [{**encoding.decode(row), effect.covariate: float(v)} for row in base for v in sweep]
    labels = labelled.encode_values(G, requested, encoding)  # [latents * steps, L], latent-major
    z = np.random.default_rng(seed).standard_normal((num_latents, G.latent_size)).astype(np.float32)
    z = np.repeat(z, steps, 0)
    generated = np.concatenate([measure_volumes(v, voxel_size, effect.measure)
                                for v in _generate(G, z, labels, batch_size, truncation_psi, noise_mode)])
    fit = slope_interval(np.tile(sweep, num_latents), generated, np.repeat(np.arange(num_latents), steps))
    result.update(steps=steps, latents=num_latents, **_slope_entries("", fit))
    return result
