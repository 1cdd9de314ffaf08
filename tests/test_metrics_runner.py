"""compute_metrics with a stand-in generator and stub feature networks; (slow) real networks + CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf3dstylegan.io import to_unit_range
from tf3dstylegan.metrics import mmd, msssim, runner

SHAPE = (16, 16, 20, 1)


class StandInG:
    latent_size = 4

    def __call__(self, z, truncation_psi=1.0, noise_mode="const"):
        # A volume whose intensity is set by z: deterministic given the seed of compute_metrics.
        ramp = np.linspace(-0.5, 0.5, np.prod(SHAPE)).reshape(SHAPE)
        return np.tanh(z[:, :1, None, None, None] * 0.3 + ramp).astype(np.float32)


class StubExtractors:
    """Cheap deterministic 'features': per-image mean/std and a few pixels."""

    def inception(self, images):
        flat = images.reshape(len(images), -1)
        return np.concatenate([flat.mean(1, keepdims=True), flat.std(1, keepdims=True), flat[:, :3]], 1)

    def deepbet(self, volumes):
        flat = volumes.reshape(len(volumes), -1)
        return np.stack([flat.mean(1), flat.std(1), flat.max(1)], 1)


def real_volumes(n, seed=0):
    return np.tanh(np.random.default_rng(seed).normal(size=(n,) + SHAPE)).astype(np.float32)


def test_keys_and_values_match_direct_computation():
    data = real_volumes(12)
    res = runner.evaluate(StandInG(), data, num=6, batch_size=3, seed=5, extractors=StubExtractors())
    expected_keys = {"fid_sagittal", "fid_axial", "fid_coronal", "bmmd2", "bmmd2_std", "msssim", "msssim_std",
                     "fid3d"}
    assert expected_keys | {f"real_{k}" for k in expected_keys} | {"num"} == set(res)
    fakes = np.concatenate(list(runner.sampled_volumes(StandInG(), 6, 3, 5)))
    halves_a, halves_b = np.concatenate([data[0:3], data[6:9]]), np.concatenate([data[3:6], data[9:12]])
    mmd_fake = [mmd.batch_mmd2(to_unit_range(fakes[i:i + 3]), to_unit_range(halves_a[i:i + 3]))
                for i in (0, 3)]
    mmd_real = [mmd.batch_mmd2(to_unit_range(halves_a[i:i + 3]), to_unit_range(halves_b[i:i + 3]))
                for i in (0, 3)]
    assert res["bmmd2"] == pytest.approx(np.mean(mmd_fake)) and res["real_bmmd2"] == pytest.approx(np.mean(mmd_real))
    # Pairs run across batch borders: (0, 1), (2, 3), (4, 5).
    assert res["msssim"] == pytest.approx(msssim.pairwise_ms_ssim(to_unit_range(fakes)).mean())
    assert res["real_msssim"] == pytest.approx(msssim.pairwise_ms_ssim(to_unit_range(halves_a)).mean())
    assert res["fid_axial"] > res["real_fid_axial"] >= 0


def test_subset_without_reference_and_iterable_input():
    data = real_volumes(4)
    res = runner.evaluate(StandInG(), iter([data[:3], data[3:]]), metrics=["bmmd2"], num=4, batch_size=2,
                                 reference=False, extractors=StubExtractors())
    assert set(res) == {"num", "bmmd2", "bmmd2_std"}


def test_feature_metrics_memorisation_and_ranges(tmp_path):
    from tf3dstylegan.metrics import kid, memorisation, precision_recall
    data, stub = real_volumes(24), StubExtractors()
    fakes = np.concatenate(list(runner.sampled_volumes(StandInG(), 8, 4, 0)))
    halves_a = np.concatenate([data[0:4], data[8:12]])
    train = np.concatenate([data[16:], fakes[:3]])  # three generated volumes are copies of training volumes
    res = runner.evaluate(StandInG(), data, metrics=["kid3d", "pr3d", "memorisation"], num=8, batch_size=4,
                                 extractors=stub, intervals=6, train_data=train, memorisation_png=tmp_path / "m.png")
    assert res["kid3d"] == pytest.approx(kid.kid_from_features(stub.deepbet(fakes), stub.deepbet(halves_a)))
    precision, recall = precision_recall.precision_recall(stub.deepbet(fakes), stub.deepbet(halves_a))
    assert (res["precision3d"], res["recall3d"]) == (precision, recall)
    factor = memorisation.pool_factor(SHAPE[:3])
    check = memorisation.check(memorisation.pool_volumes(fakes, factor), memorisation.pool_volumes(train, factor))
    assert res["memorisation_fraction"] == check["fraction"] and check["flagged"][:3].all()
    assert res["real_memorisation_fraction"] < res["memorisation_fraction"]
    for key in ("kid3d", "precision3d", "recall3d", "memorisation_fraction", "real_kid3d"):
        assert res[f"{key}_lo"] <= res[f"{key}_hi"] and res[f"{key}_n"] == 8.0
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_medicalnet_features_through_the_runner():
    """The tiny MedicalNet (tests/data) as the 3D feature network: keys, values, real row."""
    from pathlib import Path
    from tf3dstylegan.metrics import frechet
    metrics = ["fid_medicalnet", "kid_medicalnet", "pr_medicalnet"]
    networks = runner.FeatureExtractors(metrics, medicalnet_weights=Path(__file__).parent / "data" /
                                        "medicalnet_tiny.pth")
    data = real_volumes(16)
    res = runner.evaluate(StandInG(), data, metrics=metrics, num=8, batch_size=8, extractors=networks)
    assert {"fid_medicalnet", "kid_medicalnet", "precision_medicalnet", "recall_medicalnet"} <= set(res)
    fakes = np.concatenate(list(runner.sampled_volumes(StandInG(), 8, 8, 0)))
    expected = frechet.fid_from_features(networks.medicalnet(fakes), networks.medicalnet(data[:8]))
    assert res["fid_medicalnet"] == pytest.approx(expected, rel=1e-6)
    assert res["real_fid_medicalnet"] < res["fid_medicalnet"]


def test_errors():
    stub = StubExtractors()
    with pytest.raises(ValueError, match="only 5 volumes, 8 needed"):
        runner.evaluate(StandInG(), real_volumes(5), num=4, batch_size=2, extractors=stub)
    repeated = np.concatenate([real_volumes(4)] * 2)
    with pytest.raises(ValueError, match="distinct"):
        runner.evaluate(StandInG(), repeated, num=4, batch_size=4, extractors=stub)
    with pytest.raises(ValueError, match="do not match"):
        runner.evaluate(StandInG(), np.zeros((8, 16, 16, 16, 1), np.float32), num=4, extractors=stub)
    with pytest.raises(ValueError, match="unknown metrics"):
        runner.evaluate(StandInG(), real_volumes(8), metrics=["is"], num=4, extractors=stub)
    with pytest.raises(ValueError, match="intervals"):
        runner.evaluate(StandInG(), real_volumes(8), metrics=["bmmd2"], num=4, extractors=stub, intervals=1)
    with pytest.raises(ValueError, match="medicalnet_weights: required"):
        runner.evaluate(StandInG(), real_volumes(8), metrics=["kid_medicalnet"], num=4)


@pytest.mark.slow
def test_cli_on_demo_dataset_with_real_networks(tmp_path):
    """All metrics, real feature networks, a real (untrained) 4 mm generator and the 4 mm demo dataset."""
    import tf3dstylegan
    from tf3dstylegan.metrics import weights
    try:
        for which in ("inception", "deepbet"):
            weights.ensure_weights(which)
    except weights.WeightsError as e:
        pytest.skip(f"metric network weights unavailable (offline?): {e}")
    G, _ = tf3dstylegan.build_networks(tf3dstylegan.load_config("2mm-fd16", resolution_log2=5, voxel_size=4.0))
    G.save(tmp_path / "G.keras")
    out = tmp_path / "metrics.json"
    cmd = [sys.executable, "-m", "tf3dstylegan", "metrics",
           "--network", str(tmp_path / "G.keras"), "--num", "8", "--batch_size", "4",
           "--metrics", "fid_slices,bmmd2,msssim,fid3d,kid_slices,kid3d,pr3d,memorisation", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(out.read_text())
    for key in ("fid_sagittal", "fid_axial", "fid_coronal", "bmmd2", "msssim", "fid3d"):
        assert np.isfinite(values[key]) and np.isfinite(values[f"real_{key}"])
        assert f"{key} " in result.stdout
    assert values["fid_axial"] > values["real_fid_axial"] and values["bmmd2"] > values["real_bmmd2"]
    for key in ("kid_axial", "kid3d", "precision3d", "recall3d", "memorisation_fraction"):
        assert np.isfinite(values[key]) and f"{key} " in result.stdout
    assert values["fid3d_lo"] <= values["fid3d_hi"] and values["fid3d_n"] == 8.0
    assert (tmp_path / "metrics_memorisation.png").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    bad = subprocess.run(cmd[:-2] + ["--data", str(tmp_path / "missing")], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert bad.returncode != 0 and str(tmp_path / "missing") in bad.stderr.strip().splitlines()[-1]

