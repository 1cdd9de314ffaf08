"""bMMD² (dot-product kernel) against an explicit NumPy kernel computation."""
import numpy as np
import pytest

from tf3dstylegan.io import to_unit_range
from tf3dstylegan.metrics import mmd


def kernel_mmd2(x, y):
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    return (x @ x.T).mean() + (y @ y.T).mean() - 2 * (x @ y.T).mean()


@pytest.mark.parametrize("n_x,n_y", [(8, 8), (3, 5)])
def test_matches_kernel_sums(n_x, n_y):
    rng = np.random.default_rng(n_x * 10 + n_y)
    x, y = rng.random((n_x, 6, 7, 8, 1)), rng.random((n_y, 6, 7, 8, 1)) * 0.8 + 0.1
    assert mmd.batch_mmd2(x, y) == pytest.approx(kernel_mmd2(x, y), rel=1e-9)
    if n_x == n_y:  # the original's (sum XXᵀ + sum YYᵀ - 2 sum XYᵀ) / B²
        flat_x, flat_y = x.reshape(n_x, -1), y.reshape(n_y, -1)
        original = ((flat_x @ flat_x.T).sum() + (flat_y @ flat_y.T).sum() - 2 * (flat_x @ flat_y.T).sum()) / n_x ** 2
        assert mmd.batch_mmd2(x, y) == pytest.approx(original, rel=1e-9)


def test_identical_batches_and_range():
    rng = np.random.default_rng(0)
    x = rng.random((4, 5, 5, 5, 1))
    assert mmd.batch_mmd2(x, x) == 0.0
    assert mmd.batch_mmd2(x, x + 0.1) == pytest.approx(0.01 * 125, rel=1e-9)
    unit = to_unit_range(np.array([-2.0, -1.0, 0.0, 1.0, 3.0]))
    np.testing.assert_allclose(unit, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_mismatched_shapes():
    with pytest.raises(ValueError, match="equal sample sizes"):
        mmd.batch_mmd2(np.zeros((2, 4, 4, 4, 1)), np.zeros((2, 4, 4, 5, 1)))
