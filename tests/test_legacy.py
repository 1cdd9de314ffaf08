"""Import of original TF1 pickles: the shared fixture, spec-built pickles of other configurations, bad files."""
import pickle

import numpy as np
import pytest

import numpy_reference as ref
from conftest import reference_crop
from legacy_writer import make_states, write_pickle
from tf3dstylegan import load_network
from tf3dstylegan.legacy import LegacyFormatError

CASES = {
    # varying feature maps per level (fmap_base 32, min 2, max 16), orig G, resnet D
    "orig-resnet-varying-fmaps": dict(base=(2, 3, 2), res=4, fmap_base=32, fmap_min=2, fmap_max=16, latent=8,
                                      dlatent=8, mapping_fmaps=8, batch=2),
    # mapping width != dlatent width, resnet G, orig D, batch 1
    "resnet-orig-batch1": dict(base=(3, 4, 5), res=3, fmap_min=4, fmap_max=4, latent=6, dlatent=7,
                               mapping_fmaps=5, g_arch="resnet", d_arch="orig", batch=1),
    # skip G and D, no noise (MG config style), conditional, batch 3
    "skip-skip-nonoise-labels": dict(base=(2, 2, 2), res=4, fmap_min=3, fmap_max=3, latent=5, dlatent=5,
                                     mapping_fmaps=5, g_arch="skip", d_arch="skip", no_noise=True, label_size=2,
                                     batch=3),
    # the fixture's geometry family with another base and batch 4
    "orig-resnet-base345-batch4": dict(base=(3, 4, 5), res=4, fmap_min=3, fmap_max=3, latent=4, dlatent=4,
                                       mapping_fmaps=4, batch=4),
}


def channels_last(x):
    return np.transpose(x, (0, 2, 3, 4, 1))


def test_fixture_matches_original(fixture_dir):
    data = np.load(fixture_dir / "reference.npz")
    nets = load_network(fixture_dir / "network.pkl")
    assert nets.G_ema.config.img_shape == (80, 96, 112)
    assert nets.source_dtype == "float32"  # the fixture was built with dtype float32 (its README)
    z = data["z"]
    np.testing.assert_allclose(nets.G_ema.mapping(z).numpy(), data["dlatents"], atol=1e-4, rtol=0)
    img = nets.G_ema(z, truncation_psi=1.0, noise_mode="const").numpy()
    np.testing.assert_allclose(reference_crop(img, "images"), data["images"], atol=1e-4, rtol=0)
    img05 = nets.G_ema(z, truncation_psi=0.5, noise_mode="const").numpy()
    np.testing.assert_allclose(reference_crop(img05, "images_psi05"), data["images_psi05"], atol=1e-4, rtol=0)
    scores = nets.D(img).numpy()
    np.testing.assert_allclose(scores, data["scores"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_built_pickles_match_numpy_reference(tmp_path, name):
    case = dict(CASES[name])
    batch = case.pop("batch")
    rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
    states = make_states(rng, **case)
    path = tmp_path / "snapshot.pkl"
    write_pickle(path, states)
    nets = load_network(path)
    assert nets.source_dtype == "float16"  # no dtype kwarg stored: the original computed in float16
    z = rng.standard_normal((batch, case["latent"])).astype(np.float32)
    labels = None
    if case.get("label_size"):
        labels = np.eye(case["label_size"], dtype=np.float32)[rng.integers(0, case["label_size"], batch)]
    for psi in (1.0, 0.6):
        expected = ref.generator(states, z.astype(np.float64), psi=psi, labels=labels)
        got = nets.G_ema(z, truncation_psi=psi, labels=labels).numpy()
        assert got.shape == channels_last(expected).shape
        np.testing.assert_allclose(got, channels_last(expected), atol=2e-4 * max(1.0, np.abs(expected).max()))
    volumes = rng.standard_normal((batch,) + nets.D.img_shape + (1,)).astype(np.float32)
    expected = ref.discriminator(states["D"], np.transpose(volumes, (0, 4, 1, 2, 3)).astype(np.float64),
                                 case["base"], case["res"], case.get("d_arch", "resnet"), labels=labels)
    got = nets.D(volumes, labels=labels).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-4 * max(1.0, np.abs(expected).max()))


def test_numpy_core_names_of_published_pickles_load(tmp_path):
    """Snapshots pickled under numpy 1.x name numpy.core.*; protocol 2 stores names as text."""
    states = make_states(np.random.default_rng(0), base=(2, 2, 2), res=3, latent=4, dlatent=4, mapping_fmaps=4)
    path = tmp_path / "old.pkl"
    write_pickle(path, states, protocol=2)
    data = path.read_bytes()
    assert b"numpy._core" in data or b"numpy.core" in data
    path.write_bytes(data.replace(b"numpy._core", b"numpy.core"))
    nets = load_network(path)
    np.testing.assert_array_equal(nets.G.w_avg.numpy(), states["G"]["dlatent_avg"])


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(LegacyFormatError) as info:
        load_network(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "system" in message
    assert not marker.exists()


def test_truncated_and_foreign_pickles_give_one_line_errors(tmp_path, fixture_dir):
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes((fixture_dir / "network.pkl").read_bytes()[:100000])
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"not": "a network"}))
    for path in (truncated, other):
        with pytest.raises(LegacyFormatError) as info:
            load_network(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_build_function_and_mismatched_variables(tmp_path):
    states = make_states(np.random.default_rng(1), base=(2, 2, 2), res=3, latent=4, dlatent=4, mapping_fmaps=4)
    path = tmp_path / "old_arch.pkl"
    write_pickle(path, states, g_build="G_synthesis_stylegan2_3d")
    with pytest.raises(LegacyFormatError, match="unknown build function 'G_synthesis_stylegan2_3d'"):
        load_network(path)
    states["synthesis"]["extra/weight"] = np.zeros(3, np.float32)
    del states["D"]["Output/bias"]
    states["mapping"]["Dense3/weight"] = states["mapping"]["Dense3/weight"][:, :2]
    write_pickle(path, states)
    with pytest.raises(LegacyFormatError) as info:
        load_network(path)
    message = str(info.value)
    for part in ("unused synthesis:extra/weight", "missing D:Output/bias", "shape of mapping:Dense3/weight"):
        assert part in message
