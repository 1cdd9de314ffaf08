"""Fréchet distance: agreement with scipy's sqrtm formula, self-distance ~0, growth with perturbations."""
import numpy as np
import pytest
import scipy.linalg

from tf3dstylegan.metrics import frechet


def reference_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2))))


@pytest.mark.parametrize("n_a,n_b,dim", [(40, 50, 6), (12, 9, 20), (20, 20, 20)])
def test_matches_scipy_sqrtm(n_a, n_b, dim):
    rng = np.random.default_rng(n_a + dim)
    a = rng.normal(size=(n_a, dim))
    b = rng.normal(size=(n_b, dim)) @ rng.normal(size=(dim, dim)) * 0.5 + 0.3
    expected = reference_fid(a, b)
    assert frechet.fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet.frechet_distance(*frechet.feature_stats(a), *frechet.feature_stats(b)) == pytest.approx(
        expected, rel=1e-6)


def test_self_distance_is_zero_and_grows_with_perturbation():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(64, 32))
    assert abs(frechet.fid_from_features(feats, feats)) < 1e-8
    shift = np.full(32, 0.25)
    # A pure mean shift adds exactly |shift|^2.
    assert frechet.fid_from_features(feats, feats + shift) == pytest.approx(shift @ shift, rel=1e-6)
    noise = rng.normal(size=feats.shape)
    values = [frechet.fid_from_features(feats, feats + eps * noise) for eps in (0.1, 0.3, 1.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        frechet.fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="widths"):
        frechet.fid_from_features(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="mismatched"):
        frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
