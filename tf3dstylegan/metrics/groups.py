"""Groups of volumes by one covariate, for per-condition metrics: the categories of a categorical covariate
(`sex`) or bins between edges of a continuous one (`age:50,60,70,80,90`).

Bins are [e0, e1), [e1, e2), ..., [e_{k-1}, e_k] (the last one closed); a value outside every bin is in no
group. Values are compared with a tolerance of 1e-5 standard deviations, so that a label stored as a
standardised float32 (age 60 -> 59.999996) falls into the bin its value names.
"""
import dataclasses
from typing import List, Tuple

import numpy as np

from tf3dstylegan.data.table import CONTINUOUS

MIN_VOLUMES = {"pr3d": 4, "pr_medicalnet": 4}  # per set: precision/recall need more than k = 3 neighbours
DEFAULT_MIN_VOLUMES = 2  # FID, KID: two features per set; MS-SSIM: one pair; memorisation: two training volumes
EDGE_TOLERANCE = 1e-5  # in standard deviations of the covariate


@dataclasses.dataclass(frozen=True)
class Grouping:
    """A covariate and, for a continuous one, the bin edges (increasing; empty for a categorical one)."""

    covariate: str
    edges: Tuple[float, ...] = ()

    def __str__(self):
        return self.covariate + (":" + ",".join(f"{e:g}" for e in self.edges) if self.edges else "")


def parse_grouping(text) -> Grouping:
    """'sex' or 'age:50,60,70' -> Grouping; ValueError for a bad form (names are checked by check_grouping)."""
    name, colon, spec = (s.strip() for s in str(text).partition(":"))
    if not name:
        raise ValueError(f"expected a covariate name (sex) or a name and bin edges (age:50,60,70), got {text!r}")
    if not colon:
        return Grouping(name)
    try:
        edges = tuple(float(e) for e in spec.split(","))
    except ValueError:
        raise ValueError(f"bin edges of {name!r} must be numbers like {name}:50,60,70, got {spec!r}") from None
    if len(edges) < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bin edges of {name!r} must be at least 2 increasing finite numbers, got {spec!r}")
    return Grouping(name, edges)


def check_grouping(grouping, encoding):
    """ValueError when the covariate is unknown to `encoding` (listing the names) or does not fit its kind."""
    if grouping.covariate not in encoding.names:
        raise ValueError(f"unknown covariate {grouping.covariate!r} (covariates: {', '.join(encoding.names)})")
    covariate = encoding.covariates[encoding.names.index(grouping.covariate)]
    if covariate.kind == CONTINUOUS and not grouping.edges:
        raise ValueError(f"covariate {covariate.name!r} is continuous: give bin edges, e.g. {covariate.name}:50,60,70")
    if covariate.kind != CONTINUOUS and grouping.edges:
        raise ValueError(f"covariate {covariate.name!r} is categorical ({', '.join(covariate.categories)}): give "
                         f"its name without bin edges")


def _columns(encoding, name):
    """(covariate, first label column, number of columns) of covariate `name`."""
    start = 0
    for covariate in encoding.covariates:
        if covariate.name == name:
            return covariate, start, covariate.size
        start += covariate.size
    raise ValueError(f"unknown covariate {name!r} (covariates: {', '.join(encoding.names)})")


def covariate_values(labels, encoding, name) -> np.ndarray:
    """float64 [N]: continuous covariate `name` of encoded labels [N, label_size], in its own units."""
    covariate, start, _ = _columns(encoding, name)
    if covariate.kind != CONTINUOUS:
        raise ValueError(f"covariate {name!r} is categorical, not a number")
    return np.asarray(labels, np.float64)[:, start] * covariate.std + covariate.mean


def group_names(grouping, encoding) -> List[str]:
    """'sex=F', 'sex=M' or 'age=[50,60)', ..., 'age=[80,90]': one name per group, in group order."""
    check_grouping(grouping, encoding)
    name, edges = grouping.covariate, grouping.edges
    if not edges:
        return [f"{name}={category}" for category in encoding.covariates[encoding.names.index(name)].categories]
    last = len(edges) - 2
    return [f"{name}=[{low:g},{high:g}{']' if i == last else ')'}" for i, (low, high) in
            enumerate(zip(edges[:-1], edges[1:]))]


def assign_groups(labels, grouping, encoding) -> np.ndarray:
    """int [N]: the group index (as group_names) of each encoded label row [N, label_size], -1 for none."""
    check_grouping(grouping, encoding)
    labels = np.asarray(labels, np.float64)
    covariate, start, size = _columns(encoding, grouping.covariate)
    if not grouping.edges:
        return np.argmax(labels[:, start:start + size], axis=1).astype(np.int64)  # as LabelEncoding.decode
    values = covariate_values(labels, encoding, grouping.covariate)  # [N]
    tolerance = EDGE_TOLERANCE * covariate.std
    edges = np.asarray(grouping.edges)
    index = np.searchsorted(edges, values + tolerance, side="right") - 1  # bin i: edges[i] <= value < edges[i + 1]
    index[(index == len(edges) - 1) & (values - tolerance <= edges[-1])] = len(edges) - 2  # the last bin is closed
    index[(index < 0) | (index > len(edges) - 2)] = -1
    return index.astype(np.int64)


def min_volumes(metric) -> int:
    """Volumes per set (generated, and each real half) a metric needs."""
    return MIN_VOLUMES.get(metric, DEFAULT_MIN_VOLUMES)


def group_sample_count(count, num, reference) -> int:
    """Volumes evaluated for a group of `count` real volumes: at most `num`, and two disjoint real halves
    of that size when `reference`."""
    return min(num, count // 2 if reference else count)
