"""Improved precision and recall (Kynkäänniemi et al. 2019) on feature arrays, as StyleGAN2-ADA's
metrics/precision_recall.py.

The manifold of a feature set is the union of balls around its points, each with the radius of the distance
to its k-th nearest neighbour in the set (k = 3; the point itself, at distance 0, is not counted).
Precision = the fraction of generated features inside the real manifold; recall = the fraction of real
features inside the generated manifold. A set against itself gives 1 and 1.
"""
import numpy as np

NEIGHBOURHOOD = 3
ROW_BATCH = 1024


def pairwise_distances(x, y):
    """[n, D], [m, D] -> [n, m] Euclidean distances (float64, clipped at 0 before the root)."""
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.sqrt(np.maximum(squared, 0.0))


def manifold_radii(manifold, k=NEIGHBOURHOOD):
    """[n] distance of each manifold point to its k-th nearest other point."""
    if len(manifold) <= k:
        raise ValueError(f"precision/recall need more than k = {k} features per set, got {len(manifold)}")
    radii = []
    for start in range(0, len(manifold), ROW_BATCH):
        distances = pairwise_distances(manifold[start:start + ROW_BATCH], manifold)
        radii.append(np.partition(distances, k, axis=1)[:, k])  # index 0 is the point itself
    return np.concatenate(radii)


def coverage(manifold, probes, k=NEIGHBOURHOOD):
    """Fraction of `probes` [m, D] inside the k-NN manifold of `manifold` [n, D]."""
    radii = manifold_radii(manifold, k)
    inside = [(pairwise_distances(probes[start:start + ROW_BATCH], manifold) <= radii[None, :]).any(1)
              for start in range(0, len(probes), ROW_BATCH)]
    return float(np.concatenate(inside).mean())


def precision_recall(generated, real, k=NEIGHBOURHOOD):
    """(precision, recall) of generated features [n1, D] against real features [n2, D]."""
    generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if generated.ndim != 2 or real.ndim != 2 or generated.shape[1] != real.shape[1]:
        raise ValueError(f"need two [N, D] feature arrays of equal width, got {generated.shape} and {real.shape}")
    return coverage(real, generated, k), coverage(generated, real, k)
