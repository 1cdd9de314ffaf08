"""MS-SSIM 3D: identical volumes give 1, independent volumes near 0, the product is the right one."""
import numpy as np
import pytest
import scipy.ndimage

from tf3dstylegan.metrics import msssim


def smooth_fields(rng, n, shape=(32, 32, 32)):
    """n independent smooth random fields scaled to [0, 1]."""
    fields = scipy.ndimage.gaussian_filter(rng.normal(size=(n,) + shape), (0, 2, 2, 2))
    lo, hi = fields.min(axis=(1, 2, 3), keepdims=True), fields.max(axis=(1, 2, 3), keepdims=True)
    return (fields - lo) / (hi - lo)


# The blur runs in float32: each blurred map carries a relative rounding error of about (taps + 2) * eps32 per
# axis (a dot product of 13 taps, three axes), which reaches cs = (2 cov + C2) / (var_a + var_b + C2) scaled by
# E[x^2] / (var + C2). How BLAS blocks the products (and so the rounding) depends on the machine.
BLUR_ROUNDING = 3 * (13 + 2) * float(np.finfo(np.float32).eps)


def float32_bound(*volumes):
    """A bound on the deviation of MS-SSIM caused by the float32 blur, for volumes in [0, 1]."""
    squares = max(float(np.mean(np.square(v))) for v in volumes)
    variance = min(float(np.var(v)) for v in volumes)
    return float(BLUR_ROUNDING * squares / (variance + msssim.C2))


def test_identical_is_one():
    rng = np.random.default_rng(0)
    volume = rng.random((16, 20, 24, 1))
    assert msssim.ms_ssim_3d(volume, volume) == pytest.approx(1.0, abs=float32_bound(volume))
    assert float32_bound(volume) < 1e-4  # the bound is tight enough to mean something


def test_independent_near_zero_and_perturbed_near_one():
    rng = np.random.default_rng(1)
    a, b = smooth_fields(rng, 2)
    assert msssim.ms_ssim_3d(a, b) < 0.15
    # White noise keeps some similarity at coarse scales, where C2 dominates the pooled variance.
    assert msssim.ms_ssim_3d(rng.random((32, 32, 32)), rng.random((32, 32, 32))) < 0.3
    perturbed = np.clip(a + 0.02 * rng.normal(size=a.shape), 0, 1)
    assert msssim.ms_ssim_3d(a, perturbed) > 0.9
    assert msssim.ms_ssim_3d(a, perturbed) == pytest.approx(msssim.ms_ssim_3d(perturbed, a),
                                                             abs=2 * float32_bound(a, perturbed))


def test_product_uses_last_scale_ssim_once():
    rng = np.random.default_rng(2)
    a, b = smooth_fields(rng, 2)
    b = 0.5 * a + 0.5 * b
    terms, x, y = [], a, b
    for _ in range(5):
        terms.append(msssim.ssim_and_cs(x, y))
        x, y = (v[: v.shape[0] // 2 * 2, : v.shape[1] // 2 * 2, : v.shape[2] // 2 * 2]
                .reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2, v.shape[2] // 2, 2).mean((1, 3, 5)) for v in (x, y))
    cs = np.array([t[1] for t in terms[:4]])
    expected = np.prod(cs ** msssim.WEIGHTS[:4]) * terms[4][0] ** msssim.WEIGHTS[4]
    buggy = np.prod(cs ** msssim.WEIGHTS[:4] * terms[4][0] ** msssim.WEIGHTS[4])
    assert msssim.ms_ssim_3d(a, b) == pytest.approx(expected, rel=1e-12)
    assert abs(expected - buggy) > 1e-6


def test_pairs_and_shape_errors():
    rng = np.random.default_rng(3)
    volumes = rng.random((5, 16, 16, 16, 1))
    volumes[1] = volumes[0]
    values = msssim.pairwise_ms_ssim(volumes)
    assert values.shape == (2,) and values[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=">= 16"):
        msssim.ms_ssim_3d(np.zeros((15, 16, 16)), np.zeros((15, 16, 16)))
    with pytest.raises(ValueError, match="equal"):
        msssim.ms_ssim_3d(np.zeros((16, 16, 16)), np.zeros((16, 16, 17)))


def scipy_ms_ssim(a, b):
    """Float64 reference with scipy's Gaussian filter (the formula as documented in msssim.py)."""
    value = 1.0
    for scale, weight in enumerate(msssim.WEIGHTS):
        blur = lambda v: scipy.ndimage.gaussian_filter(v, 1.5, truncate=4.0, mode="reflect")  # noqa: E731
        mu_a, mu_b = blur(a), blur(b)
        cs_map = (2 * (blur(a * b) - mu_a * mu_b) + msssim.C2) / (
            blur(a * a) - mu_a ** 2 + blur(b * b) - mu_b ** 2 + msssim.C2)
        ssim_map = (2 * mu_a * mu_b + msssim.C1) / (mu_a ** 2 + mu_b ** 2 + msssim.C1) * cs_map
        value *= max(ssim_map.mean() if scale == 4 else cs_map.mean(), 0.0) ** weight
        a, b = (v[: v.shape[0] // 2 * 2, : v.shape[1] // 2 * 2, : v.shape[2] // 2 * 2]
                .reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2, v.shape[2] // 2, 2).mean((1, 3, 5)) for v in (a, b))
    return value


def test_matches_float64_scipy_filter():
    for n in (1, 4, 13, 40):  # band matrices, including axes shorter than the 13-tap window
        v = np.random.default_rng(n).random(n)
        np.testing.assert_allclose(msssim.blur_matrix(n) @ v,
                                   scipy.ndimage.gaussian_filter1d(v, 1.5, truncate=4.0, mode="reflect"), atol=1e-14)
    rng = np.random.default_rng(4)
    a, b = smooth_fields(rng, 2, shape=(24, 32, 40))
    b = np.clip(0.6 * a + 0.4 * b + 0.05 * rng.random(a.shape), 0, 1)
    assert msssim.ms_ssim_3d(a, b) == pytest.approx(scipy_ms_ssim(a, b), abs=1e-6)
    batch = np.stack([a, b, b, a])[..., None]
    np.testing.assert_allclose(msssim.pairwise_ms_ssim(batch, pairs_per_batch=1),
                               [msssim.ms_ssim_3d(a, b), msssim.ms_ssim_3d(b, a)], rtol=1e-12)
