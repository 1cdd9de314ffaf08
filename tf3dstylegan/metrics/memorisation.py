"""Memorisation check: does a generated volume copy a training volume?

For each evaluated volume, its nearest training volume by normalised cross-correlation (NCC, the Pearson
correlation of all voxel intensities) of whole volumes. Volumes are first average-pooled by the smallest
integer factor that leaves at most `MAX_VOXELS` voxels (2 mm volumes 80x96x112 -> 40x48x56; near-copies stay
near-copies), so that a thousand volumes fit in memory and the NCC matrix is one matrix product.

The reference is the closest pair of distinct real subjects: the largest NCC between two different training
volumes (a volume is not compared with itself, and pairs with NCC >= 0.9999, the float32 accuracy of a
correlation over ~1e5 voxels, are one subject scanned twice and skipped). A generated volume closer
to a training volume than that is flagged; `fraction` is the share flagged. For volumes drawn from the same
distribution as the training set (held-out reals) the expected share is about 2 / (n_train + 1): the real
row of the metrics table shows it.
"""
import numpy as np

MAX_VOXELS = 1 << 17
IDENTICAL = 1.0 - 1e-4
CHUNK = 256


def pool_factor(shape, max_voxels=MAX_VOXELS):
    """Smallest integer f with prod(axis // f) <= max_voxels for a spatial shape (X, Y, Z)."""
    factor = 1
    while np.prod([max(s // factor, 1) for s in shape]) > max_voxels:
        factor += 1
    return factor


def pool_volumes(volumes, factor):
    """[N, X, Y, Z, C] -> [N, X//f, Y//f, Z//f] float32: channel mean, then f³ average pooling (VALID)."""
    v = np.asarray(volumes, np.float32).mean(-1)
    n, x, y, z = v.shape[0], *(s // factor for s in v.shape[1:4])
    v = v[:, :x * factor, :y * factor, :z * factor]
    return v.reshape(n, x, factor, y, factor, z, factor).mean(axis=(2, 4, 6))


def ncc_vectors(pooled):
    """[N, ...] -> [N, V] float32 rows of zero mean and unit norm (a constant volume gives a zero row)."""
    flat = np.asarray(pooled, np.float32).reshape(len(pooled), -1)
    flat = flat - flat.mean(1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)


def nearest_neighbours(query, reference, within=False):
    """(ncc [n], index [n]) of each query row's most correlated reference row ([n, V], [m, V] NCC vectors).

    within=True (query is reference): a row is not its own neighbour, nor is a row identical to it."""
    best, index = np.full(len(query), -np.inf), np.zeros(len(query), np.int64)
    for start in range(0, len(query), CHUNK):
        ncc = query[start:start + CHUNK] @ reference.T  # [c, m]
        if within:
            rows = np.arange(len(ncc))
            ncc[rows, start + rows] = -np.inf
            ncc = np.where(ncc >= IDENTICAL, -np.inf, ncc)
        index[start:start + CHUNK] = ncc.argmax(1)
        best[start:start + CHUNK] = ncc.max(1)
    return best, index


def check(evaluated, train):
    """Memorisation of pooled volumes `evaluated` [n, ...] against `train` [m >= 2, ...] (pooled alike).

    Returns {'nearest_ncc' [n], 'nearest_index' [n], 'threshold', 'flagged' [n] bool, 'fraction'}."""
    if len(train) < 2 or len(evaluated) < 1 or np.shape(evaluated)[1:] != np.shape(train)[1:]:
        raise ValueError(f"memorisation needs >= 2 training volumes and evaluated volumes of the same shape, "
                         f"got {np.shape(train)} and {np.shape(evaluated)}")
    train_vectors = ncc_vectors(train)
    threshold = float(nearest_neighbours(train_vectors, train_vectors, within=True)[0].max())
    if not np.isfinite(threshold):
        raise ValueError("memorisation needs two distinct training volumes")
    nearest, index = nearest_neighbours(ncc_vectors(evaluated), train_vectors)
    flagged = nearest > threshold
    return {"nearest_ncc": nearest, "nearest_index": index, "threshold": threshold, "flagged": flagged,
            "fraction": float(flagged.mean())}


def summary(result):
    """Flat {name: float} of a `check` result: flagged share and count, threshold, NCC distribution."""
    ncc = result["nearest_ncc"]
    q05, median, q95 = np.quantile(ncc, [0.05, 0.5, 0.95])
    return {"memorisation_fraction": result["fraction"], "memorisation_count": float(result["flagged"].sum()),
            "memorisation_threshold": result["threshold"], "memorisation_ncc_q05": float(q05),
            "memorisation_ncc_median": float(median), "memorisation_ncc_q95": float(q95),
            "memorisation_ncc_max": float(ncc.max())}


def closest_pairs_image(evaluated, train, result, num_pairs=8):
    """uint8 image: one row per closest pair (evaluated | nearest training volume), most similar first.

    `evaluated` and `train` are pooled volumes in [-1, 1]; each volume shows its three middle planes."""
    from tf3dstylegan import io
    order = np.argsort(-result["nearest_ncc"])[:num_pairs]
    rows = [v for i in order for v in (evaluated[i], train[result["nearest_index"][i]])]
    return io.preview_grid(np.stack(rows)[..., None], columns=2)
