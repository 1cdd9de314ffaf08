"""Memorisation check: copies of training volumes are flagged, held-out subjects of the same kind are not."""
import numpy as np
import pytest
import scipy.ndimage

from tf3dstylegan.metrics import memorisation

SHAPE = (20, 24, 28)


def subjects(rng, n, template):
    """Volumes in [-1, 1] sharing an anatomy-like template, each with its own smooth deformation of intensity."""
    individual = scipy.ndimage.gaussian_filter(rng.normal(size=(n,) + SHAPE), (0, 2, 2, 2))
    volumes = template[None] + 0.6 * individual / individual.std()
    return np.tanh(volumes / 2)[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    template = scipy.ndimage.gaussian_filter(rng.normal(size=SHAPE), 3)
    template /= template.std()
    train, held_out, fresh = (subjects(rng, 24, template) for _ in range(3))
    generated = fresh.copy()
    copied = [3, 7, 11, 2, 19, 5]
    generated[:6] = train[copied] + 0.02 * rng.normal(size=(6,) + SHAPE + (1,))  # near-copies, slight noise
    return train, held_out, generated, copied


def test_copies_flagged_held_out_not(sets):
    train, held_out, generated, copied = sets
    factor = memorisation.pool_factor(SHAPE)
    pooled = lambda v: memorisation.pool_volumes(v, factor)  # noqa: E731
    result = memorisation.check(pooled(generated), pooled(train))
    assert result["flagged"][:6].all() and list(result["nearest_index"][:6]) == copied
    assert result["fraction"] >= 6 / 24 and result["nearest_ncc"][:6].min() > 0.99
    held = memorisation.check(pooled(held_out), pooled(train))
    assert held["fraction"] <= 3 / 24  # expected about 2 / (n_train + 1) by chance
    assert held["nearest_ncc"].max() < 0.99 and held["threshold"] == result["threshold"] < 0.99
    summary = memorisation.summary(result)
    assert summary["memorisation_count"] == float(result["flagged"].sum())
    assert summary["memorisation_ncc_q05"] <= summary["memorisation_ncc_median"] <= summary["memorisation_ncc_max"]
    image = memorisation.closest_pairs_image(pooled(generated), pooled(train), result, num_pairs=4)
    assert image.dtype == np.uint8 and image.ndim == 2 and image.shape[0] > image.shape[1] / 2


def test_ncc_is_pearson_correlation_and_pooling():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 6, 8, 10))
    vectors = memorisation.ncc_vectors(np.stack([a, b, 3 * a + 1, np.zeros_like(a)]))
    ncc = vectors @ vectors.T
    assert ncc[0, 1] == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-6)
    assert ncc[0, 2] == pytest.approx(1.0, abs=1e-6) and not vectors[3].any()
    assert memorisation.pool_factor((80, 96, 112)) == 2 and memorisation.pool_factor((160, 192, 224)) == 4
    assert memorisation.pool_factor((16, 16, 16)) == 1
    pooled = memorisation.pool_volumes(np.arange(64, dtype=np.float32).reshape(1, 4, 4, 4, 1), 2)
    assert pooled.shape == (1, 2, 2, 2) and pooled[0, 0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5, 16, 17, 20, 21]))


def test_identical_training_volumes_are_one_subject():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(5, 8, 8, 8)).astype(np.float32)
    train[4] = train[0]  # the same subject twice: not the "closest distinct pair"
    result = memorisation.check(train[:2], train)
    assert result["threshold"] < 0.5 and result["flagged"].all()
    # Full-size volumes: float32 self-correlations are 1 only to ~1e-5; a volume is never its own neighbour.
    large = rng.normal(size=(4, 40, 48, 56)).astype(np.float32)
    assert memorisation.check(large[:1], large)["threshold"] < 0.1
    with pytest.raises(ValueError, match="distinct"):
        memorisation.check(train[:1], np.stack([train[0], train[0]]))
    with pytest.raises(ValueError, match="same shape"):
        memorisation.check(train[:1, :4], train)
