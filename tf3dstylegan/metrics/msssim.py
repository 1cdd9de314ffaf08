"""3D multi-scale SSIM (MS-SSIM) for the diversity of generated volumes (paper Table 2).

As the original (spec §8): intensities in [0, 1], Gaussian window sigma 1.5 (scipy, truncate 4 = 13 taps,
reflect borders), C1 = 0.01², C2 = 0.03², 2x2x2 average pooling (VALID) between 5 scales, weights
[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]. Fixed here: the value is prod_{s<4} cs_s^w_s * ssim_4^w_4 (the
original multiplied the last-scale SSIM into every factor), and negative cs/ssim terms are clipped to 0
(the original gave NaN). Every axis must be >= 16 so the fifth scale has at least one voxel.
"""
import numpy as np
import scipy.ndimage

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
SIGMA = 1.5
C1, C2 = 0.01 ** 2, 0.03 ** 2


def ssim_and_cs(a, b):
    """Mean SSIM and mean contrast-structure term of two [X, Y, Z] volumes in [0, 1]."""
    blur = lambda v: scipy.ndimage.gaussian_filter(v, SIGMA, truncate=4.0, mode="reflect")  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    cs_map = (2.0 * cov + C2) / (var_a + var_b + C2)
    ssim_map = (2.0 * mu_a * mu_b + C1) / (mu_a ** 2 + mu_b ** 2 + C1) * cs_map
    return float(ssim_map.mean()), float(cs_map.mean())


def _avg_pool2(v):
    """2x2x2 average pooling, VALID: [X, Y, Z] -> [X//2, Y//2, Z//2]."""
    x, y, z = (s // 2 * 2 for s in v.shape)
    v = v[:x, :y, :z]
    return v.reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5))


def ms_ssim_3d(a, b):
    """MS-SSIM of two [X, Y, Z] or [X, Y, Z, C] volumes in [0, 1] (channels averaged)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim not in (3, 4):
        raise ValueError(f"need two equal [X, Y, Z(, C)] volumes, got {a.shape} and {b.shape}")
    if min(a.shape[:3]) < 2 ** (len(WEIGHTS) - 1):
        raise ValueError(f"MS-SSIM needs every axis >= {2 ** (len(WEIGHTS) - 1)}, got {a.shape[:3]}")
    if a.ndim == 4:
        return float(np.mean([ms_ssim_3d(a[..., c], b[..., c]) for c in range(a.shape[-1])]))
    value = 1.0
    for scale, weight in enumerate(WEIGHTS):
        ssim, cs = ssim_and_cs(a, b)
        term = ssim if scale == len(WEIGHTS) - 1 else cs
        value *= max(term, 0.0) ** weight
        a, b = _avg_pool2(a), _avg_pool2(b)
    return value


def pairwise_ms_ssim(volumes):
    """MS-SSIM of consecutive disjoint pairs (0, 1), (2, 3), ... of [N, X, Y, Z, C] volumes in [0, 1]."""
    volumes = np.asarray(volumes)
    return np.array([ms_ssim_3d(volumes[i], volumes[i + 1]) for i in range(0, len(volumes) - 1, 2)])
