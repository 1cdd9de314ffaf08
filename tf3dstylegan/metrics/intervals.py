"""Uncertainty of a metric: its spread over repeated random halves of the samples, around the reported value.

Every metric is recomputed on `num_halves` random halves (drawn without replacement, independently for
each set the metric reads). Halves, not bootstrap resamples: a resample with replacement repeats samples,
which shrinks k-NN radii to zero (precision/recall), adds self-pairs to KID's kernel sums and lowers the rank
of FID's covariances; a half holds distinct samples only. A half drawn without replacement from n samples
varies as much as the full sample does (for a mean: variance sigma^2 / (n/2) * (1 - 1/2) = sigma^2 / n), so
the spread of the halves' values measures the full value's sampling spread. But their level does not belong
to the full value: FID and KID computed from half the samples are biased upward (FID by O(1/n)). So the
reported 95 % range is the halves' spread centred on the full value:
[value + q2.5 - median, value + q97.5 - median] of the halves' values (`centred_range`), which always holds
the reported value; the halves' own median is not reported.
"""
import numpy as np

NUM_HALVES = 50
LEVEL = 0.95
METHOD = ("halves: the 2.5-97.5 % spread of the metric over random halves (without replacement), centred on "
          "the full-sample value")


def half_indices(rng, n):
    """A random half (n // 2 distinct indices, at least 2) of range(n)."""
    return rng.choice(n, max(n // 2, 2), replace=False)


def _half_values(statistic, sets, num_halves, seed):
    """statistic(*halves) over `num_halves` random halves of each array in `sets` (axis 0)."""
    if num_halves < 2:
        raise ValueError(f"need at least 2 halves for a range, got {num_halves}")
    sets = [np.asarray(s) for s in sets]
    rng = np.random.default_rng(seed)
    return [statistic(*(s[half_indices(rng, len(s))] for s in sets)) for _ in range(num_halves)]


def spread_over_halves(statistic, sets, num_halves=NUM_HALVES, seed=0, level=LEVEL):
    """(low, high) quantiles of statistic(*halves) over random halves of each array in `sets` (axis 0)."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(_half_values(statistic, sets, num_halves, seed), [tail, 1.0 - tail])
    return float(low), float(high)


def centred_range(statistic, sets, value, num_halves=NUM_HALVES, seed=0, level=LEVEL):
    """(low, high): the quantile spread of statistic(*halves) around the halves' median, moved onto `value` (the
    statistic of the full sets), so that low <= value <= high. A statistic of several values gets a range each
    (arrays of them, from the same halves)."""
    tail = (1.0 - level) / 2.0
    halves = np.asarray(_half_values(statistic, sets, num_halves, seed), np.float64)
    low, median, high = np.quantile(halves, [tail, 0.5, 1.0 - tail], axis=0)
    if low.ndim == 0:
        return float(value + low - median), float(value + high - median)
    return value + low - median, value + high - median
