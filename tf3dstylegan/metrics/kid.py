"""Kernel Inception Distance: unbiased squared MMD with the cubic polynomial kernel, averaged over subsets.

k(x, y) = (x·y / d + 1)³ for d-dimensional features. For subsets X, Y of m features each,
MMD²_u = [Σ_{i≠j} k(x_i, x_j) + Σ_{i≠j} k(y_i, y_j)] / (m (m - 1)) - 2 Σ_{i,j} k(x_i, y_j) / m².
KID is its mean over `num_subsets` random subsets (drawn without replacement) of size
m = min(n1, n2, max_subset_size), as StyleGAN2-ADA's metrics/kernel_inception_distance.py (defaults 100
subsets of at most 1000). Unbiased: about 0 for two samples of one distribution at any sample size, and it
may be slightly negative.
"""
import numpy as np

NUM_SUBSETS = 100
MAX_SUBSET_SIZE = 1000


def _check_pair(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two [N >= 2, D] feature arrays of equal width, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features must be finite")
    return a, b


def polynomial_kernel(x, y):
    """[n, D], [m, D] -> [n, m] kernel values (x·y / D + 1)³."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y):
    """Unbiased MMD² of two equal-sized feature sets [m, D] with the cubic polynomial kernel."""
    m = len(x)
    within = polynomial_kernel(x, x) + polynomial_kernel(y, y)
    return float((within.sum() - np.trace(within)) / (m * (m - 1)) - 2.0 * polynomial_kernel(x, y).sum() / m ** 2)


def kid_from_features(a, b, num_subsets=NUM_SUBSETS, max_subset_size=MAX_SUBSET_SIZE, seed=0):
    """KID between feature sets a [n1, D] and b [n2, D] (mean MMD²_u over random equal-sized subsets)."""
    a, b = _check_pair(a, b)
    m = min(len(a), len(b), max_subset_size)
    if m == len(a) == len(b):  # every subset is the whole set: one evaluation gives the mean
        return mmd2_unbiased(a, b)
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values))
