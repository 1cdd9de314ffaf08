"""Uncertainty of a metric: its spread over repeated random halves of the samples.

Every metric is recomputed on `num_halves` random halves (drawn without replacement, independently for
each set the metric reads) and the 2.5 % and 97.5 % quantiles of those values are reported as its 95 %
range, with the number of samples the full value used. Halves, not bootstrap resamples: a resample with
replacement repeats samples, which shrinks k-NN radii to zero (precision/recall), adds self-pairs to KID's
kernel sums and lowers the rank of FID's covariances; a half holds distinct samples only. The range is that
of a metric computed from half the samples, so it is wider than the full-sample uncertainty (by about √2
for averages), and FID, which grows as the sample count falls, lies above the full-sample value: compare
runs by their ranges at the same sample count.
"""
import numpy as np

NUM_HALVES = 50
LEVEL = 0.95


def half_indices(rng, n):
    """A random half (n // 2 distinct indices, at least 2) of range(n)."""
    return rng.choice(n, max(n // 2, 2), replace=False)


def spread_over_halves(statistic, sets, num_halves=NUM_HALVES, seed=0, level=LEVEL):
    """(low, high) quantiles of statistic(*halves) over random halves of each array in `sets` (axis 0)."""
    if num_halves < 2:
        raise ValueError(f"need at least 2 halves for a range, got {num_halves}")
    sets = [np.asarray(s) for s in sets]
    rng = np.random.default_rng(seed)
    values = [statistic(*(s[half_indices(rng, len(s))] for s in sets)) for _ in range(num_halves)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
