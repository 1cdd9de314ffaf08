"""Fréchet distance between Gaussians fitted to feature sets (FID and the 3D feature FID).

FID = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)). The reference computes the last term with
scipy.linalg.sqrtm (a Schur method: ~50 s at D = 2048 on 2 cores). Here it is computed exactly from the
same matrices by symmetric eigen-decompositions: tr sqrtm(S1 S2) = tr sqrtm(S1^½ S2 S1^½), and, from
centred features A1 [n1, D], A2 [n2, D] with n = min(n1, n2) <= D, = nuclear norm(A1 A2ᵀ) / sqrt((n1-1)(n2-1))
(the nonzero eigenvalues of S1 S2 are the squared singular values of that n1 x n2 matrix). Both agree with
scipy's sqrtm to ~1e-7 relative (tests/test_metrics_frechet.py).
"""
import numpy as np


def feature_stats(features):
    """[N, D] features -> (mean [D], covariance [D, D]) with N - 1 normalisation (as the reference)."""
    features = _check_features(features)
    return features.mean(0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _check_features(features):
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2 or not np.isfinite(features).all():
        raise ValueError(f"need finite [N >= 2, D] features, got shape {features.shape}")
    return features


def _psd_sqrt(sigma):
    """Symmetric square root of a positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    eigenvalues, vectors = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2):
    """tr(sqrtm(S1 S2)) for covariance matrices S1, S2 [D, D]."""
    root1 = _psd_sqrt(sigma1)
    eigenvalues = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def fid_from_features(features_a, features_b):
    """Fréchet distance between two feature sets [N1, D] and [N2, D]."""
    a, b = _check_features(features_a), _check_features(features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: {a.shape} vs {b.shape}")
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance(*feature_stats(a), *feature_stats(b))
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    diff = a.mean(0) - b.mean(0)
    scale_a, scale_b = len(a) - 1.0, len(b) - 1.0
    trace_sqrt = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    return float(diff @ diff + (centred_a ** 2).sum() / scale_a + (centred_b ** 2).sum() / scale_b
                 - 2.0 * trace_sqrt)
