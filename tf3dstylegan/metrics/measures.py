"""From the values gathered for each set of volumes to the results: every metric, its range, its sample count.

A measurement is a result key, a statistic and the arrays it reads (feature sets, per-batch or per-pair
values, per-volume memorisation flags). Its value is the statistic of the full arrays; with `intervals`
> 0 the keys `<key>_lo` and `<key>_hi` hold the 95 % range (the statistic's spread over that many random
halves, centred on its value: see `intervals.py`) and `<key>_n` the number of samples in the first array.
Ranges need at least `MIN_SAMPLES` samples in every array, otherwise they are left out.
"""
from typing import Callable, NamedTuple

import numpy as np

from tf3dstylegan.metrics import frechet, intervals, kid, memorisation, precision_recall, slices

MIN_SAMPLES = 8


def _mean(values):
    return float(np.mean(values))


def _median(values):
    return float(np.median(values))


# metric -> [(result key, feature set name, statistic of (evaluated, reference))]; a statistic of several values (one
# k-NN pass gives precision and recall) has a tuple of keys.
FEATURE_METRICS = {
    "fid_slices": [(f"fid_{plane}", plane, frechet.fid_from_features) for plane in slices.PLANES],
    "kid_slices": [(f"kid_{plane}", plane, kid.kid_from_features) for plane in slices.PLANES],
    "fid3d": [("fid3d", "deepbet", frechet.fid_from_features)],
    "kid3d": [("kid3d", "deepbet", kid.kid_from_features)],
    "pr3d": [(("precision3d", "recall3d"), "deepbet", precision_recall.precision_recall)],
    "fid_medicalnet": [("fid_medicalnet", "medicalnet", frechet.fid_from_features)],
    "kid_medicalnet": [("kid_medicalnet", "medicalnet", kid.kid_from_features)],
    "pr_medicalnet": [(("precision_medicalnet", "recall_medicalnet"), "medicalnet", precision_recall.precision_recall)],
}


class Measurement(NamedTuple):
    key: object  # a result key, or a tuple of keys for a statistic of as many values
    statistic: Callable
    arrays: tuple


def feature_measurements(metrics, prefix, evaluated, reference):
    """FID/KID/precision/recall measurements of feature sets {name: [N, D]} `evaluated` vs `reference`."""
    return [Measurement(tuple(prefix + k for k in key) if isinstance(key, tuple) else prefix + key, statistic,
                        (evaluated[name], reference[name]))
            for metric in metrics for key, name, statistic in FEATURE_METRICS.get(metric, [])]


def memorisation_measurements(prefix, check):
    """The flagged share and the median nearest-training NCC of a `memorisation.check` result."""
    return [Measurement(f"{prefix}memorisation_fraction", _mean, (check["flagged"],)),
            Measurement(f"{prefix}memorisation_ncc_median", _median, (check["nearest_ncc"],))]


def mean_measurement(key, values):
    """A per-item average (bMMD² per batch, MS-SSIM per pair)."""
    return Measurement(key, _mean, (np.asarray(values, np.float64),))


def measure(measurements, num_halves=0, seed=0):
    """{key: value} plus `<key>_lo`, `<key>_hi`, `<key>_n` when num_halves > 0 (and samples suffice)."""
    results = {}
    for index, (key, statistic, arrays) in enumerate(measurements):
        keys = key if isinstance(key, tuple) else (key,)
        values = np.reshape(np.asarray(statistic(*arrays), np.float64), len(keys))
        results.update({k: float(v) for k, v in zip(keys, values, strict=True)})
        if num_halves and min(len(a) for a in arrays) >= MIN_SAMPLES:
            low, high = intervals.centred_range(statistic, arrays, values if isinstance(key, tuple) else values[0],
                                                num_halves, seed=seed + index)
            for k, lo, hi in zip(keys, np.reshape(low, -1), np.reshape(high, -1), strict=True):
                results[f"{k}_lo"], results[f"{k}_hi"], results[f"{k}_n"] = float(lo), float(hi), float(len(arrays[0]))
    return results


def memorisation_summary(prefix, check):
    """Threshold, flagged count and NCC quantiles of a `memorisation.check` result (no ranges)."""
    return {prefix + key: value for key, value in memorisation.summary(check).items()
            if key not in ("memorisation_fraction", "memorisation_ncc_median")}
