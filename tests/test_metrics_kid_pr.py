"""KID, precision/recall and the ranges over halves, on feature arrays with known structure."""
import numpy as np
import pytest

from tf3dstylegan.metrics import intervals, kid, measures, precision_recall


def explicit_mmd2_unbiased(x, y):
    """The StyleGAN2-ADA formula, one kernel value at a time."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / m ** 2


def test_kid_formula_and_subsets():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 0.3
    assert kid.mmd2_unbiased(x, y) == pytest.approx(explicit_mmd2_unbiased(x, y), rel=1e-10)
    assert kid.kid_from_features(x, y) == pytest.approx(explicit_mmd2_unbiased(x, y), rel=1e-10)
    # Unequal sizes: the mean over subsets of min(n1, n2), reproducible from the seed.
    z = rng.normal(size=(12, 5))
    value = kid.kid_from_features(z, y, num_subsets=20, seed=3)
    sub_rng = np.random.default_rng(3)
    expected = np.mean([kid.mmd2_unbiased(z[sub_rng.choice(12, 7, replace=False)],
                                          y[sub_rng.choice(7, 7, replace=False)]) for _ in range(20)])
    assert value == pytest.approx(expected, rel=1e-12)


def test_kid_near_zero_for_one_distribution_and_grows_with_perturbation():
    rng = np.random.default_rng(1)
    a = np.abs(rng.normal(size=(300, 256)))  # non-negative like pooled ReLU features
    shift = [kid.kid_from_features(a, a + eps) for eps in (0.1, 0.3)]
    assert 0 < shift[0] < shift[1]
    # A set with itself: exactly the unbiased estimator's O(1/m) diagonal term, -2/m (mean k(x, x) - mean
    # k(x, x') for x != x'), which vanishes as m grows.
    gram = kid.polynomial_kernel(a, a)
    off_diagonal = (gram.sum() - np.trace(gram)) / (300 * 299)
    assert kid.kid_from_features(a, a) == pytest.approx(-2 / 300 * (np.diag(gram).mean() - off_diagonal), rel=1e-9)
    assert abs(kid.kid_from_features(a, a)) < 0.2 * shift[0]
    b = np.abs(rng.normal(size=(300, 256)))  # a second sample of the same distribution: unbiased, about 0
    assert abs(kid.kid_from_features(a, b)) < 0.05 * shift[0]
    with pytest.raises(ValueError, match="equal width"):
        kid.kid_from_features(a, a[:, :10])


def test_precision_recall_self_one_and_perturbations():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(200, 16))
    assert precision_recall.precision_recall(real, real) == (1.0, 1.0)
    far = precision_recall.precision_recall(real + 10.0, real)  # generated off the real manifold
    assert far == (0.0, 0.0)
    collapsed = real[:1] + 0.01 * rng.normal(size=real.shape)  # mode collapse: precise, no recall
    precision, recall = precision_recall.precision_recall(collapsed, real)
    assert precision == 1.0 and recall < 0.05
    other = rng.normal(size=(200, 16))
    precision, recall = precision_recall.precision_recall(other, real)
    assert 0.5 < precision < 1.0 and 0.5 < recall < 1.0


def test_radii_are_kth_neighbour_excluding_self():
    points = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]])
    np.testing.assert_allclose(precision_recall.manifold_radii(points, k=3), [7.0, 6.0, 4.0, 7.0, 14.0])
    with pytest.raises(ValueError, match="more than k"):
        precision_recall.manifold_radii(points[:3], k=3)


def test_ranges_over_halves_cover_the_spread():
    rng = np.random.default_rng(3)
    values = rng.normal(size=400)
    low, high = intervals.spread_over_halves(np.mean, [values], num_halves=200)
    assert low < values.mean() < high
    # Half-sample means have standard error sigma / sqrt(n / 2) * sqrt(1 / 2) (without replacement).
    assert (high - low) == pytest.approx(2 * 1.96 * values.std() / np.sqrt(400), rel=0.3)
    results = measures.measure([measures.mean_measurement("x", values), measures.mean_measurement("few", values[:5])],
                               num_halves=20)
    assert set(results) == {"x", "x_lo", "x_hi", "x_n", "few"} and results["x_n"] == 400.0
    assert results["x_lo"] <= results["x"] <= results["x_hi"]
    with pytest.raises(ValueError, match="at least 2"):
        intervals.spread_over_halves(np.mean, [values], num_halves=1)
