"""Batch-wise squared MMD with a dot-product kernel (the paper's bMMD², Table 2).

For one batch X [B, V] of generated and Y [B', V] of real volumes (flattened, intensities in [0, 1]):
bMMD² = mean(X Xᵀ) + mean(Y Yᵀ) - 2 mean(X Yᵀ) = |mean(X) - mean(Y)|², the biased estimate. The reported
number is the mean (and standard deviation) over batches.
"""
import numpy as np


def batch_mmd2(x, y):
    """bMMD² of two batches [B, ...] and [B', ...] (same per-sample shape), dot-product kernel."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"batches must be non-empty with equal sample sizes, got {x.shape} and {y.shape}")
    diff = x.mean(0) - y.mean(0)
    return float(diff.dot(diff))
