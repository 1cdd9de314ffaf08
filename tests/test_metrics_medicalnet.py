"""MedicalNet ResNet port and the torch-free torch.save reader, against files written by PyTorch.

tests/data/medicalnet_tiny.pth and its outputs were written by tests/data/medicalnet_reference.py (torch
2.13 with medmetric's copy of MedicalNet's resnet.py); no torch is needed here.
"""
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tf3dstylegan.metrics import medicalnet, torchsave

DATA = Path(__file__).parent / "data"


@pytest.mark.slow
def test_tiny_port_matches_pytorch():
    weights = medicalnet.read_backbone_weights(DATA / "medicalnet_tiny.pth")
    assert "conv_seg.0.weight" not in weights and "conv1.weight" in weights  # head dropped, 'module.' stripped
    assert medicalnet.stage_depths(weights) == [3, 4, 6, 3]
    features = medicalnet.MedicalNetFeatures(weights)
    reference = np.load(DATA / "medicalnet_tiny_outputs.npz")
    got = features.encode(reference["inputs"])
    expected = reference["features"]
    assert got.shape == expected.shape == (2, 128)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    # HA-GAN's layout: our [X, Y, Z] volumes enter as [Z, Y, X].
    volumes = reference["inputs"].transpose(0, 3, 2, 1, 4)
    np.testing.assert_allclose(features(volumes), got, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MEDICALNET_CHECK_DIR"), reason="set MEDICALNET_CHECK_DIR (see "
                    "tests/data/medicalnet_reference.py --full)")
def test_full_resnet50_matches_pytorch():
    folder = Path(os.environ["MEDICALNET_CHECK_DIR"])
    features = medicalnet.MedicalNetFeatures(folder / "resnet_50_random.pth")
    assert features.feature_dim == 2048
    reference = np.load(folder / "resnet_50_random_outputs.npz")
    for key in [k for k in reference.files if k.startswith("inputs")]:
        expected = reference[key.replace("inputs", "features")]
        got = features.encode(reference[key])
        assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4, key


def test_both_torch_save_layouts():
    zipped, legacy = (torchsave.load(DATA / f"medicalnet_formats_{kind}.pth") for kind in ("zip", "legacy"))
    for loaded in (zipped, legacy):
        state = loaded["state_dict"]
        assert loaded["epoch"] == 7 and list(state) == ["weight", "transposed", "counts", "half"]
        np.testing.assert_array_equal(state["weight"], np.arange(24, dtype=np.float32).reshape(2, 3, 4))
        np.testing.assert_array_equal(state["transposed"], np.arange(6.0).reshape(2, 3).T)
        assert state["counts"].dtype == np.int64 and state["half"].dtype == np.float16
        np.testing.assert_array_equal(state["half"], [0.5, -2.0])


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_zip(path, marker):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": {"conv1.weight": Evil(marker)}}, 2))
    return path


def evil_legacy(path, marker):
    header = b"".join(pickle.dumps(v, 2) for v in (torchsave.LEGACY_MAGIC, torchsave.LEGACY_PROTOCOL, {}))
    path.write_bytes(header + pickle.dumps({"state_dict": Evil(marker)}, 2) + pickle.dumps([], 2))
    return path


@pytest.mark.parametrize("make", [evil_zip, evil_legacy])
def test_code_in_the_pickle_is_refused(tmp_path, make):
    marker = tmp_path / "ran"
    path = make(tmp_path / "evil.pth", marker)
    with pytest.raises(torchsave.TorchSaveError, match=r"refusing pickled global (posix|os)\.system"):
        medicalnet.read_backbone_weights(path)
    assert not marker.exists()


def test_sizes_checked_before_reading(tmp_path):
    raw = (DATA / "medicalnet_formats_legacy.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[:-10])  # last storage shorter than declared
    with pytest.raises(torchsave.TorchSaveError, match="bytes left"):
        torchsave.load(tmp_path / "cut.pth")
    with zipfile.ZipFile(DATA / "medicalnet_formats_zip.pth") as source, \
            zipfile.ZipFile(tmp_path / "short.pth", "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info.filename, data[:4] if info.filename.endswith("/data/0") else data)
    with pytest.raises(torchsave.TorchSaveError, match="expected"):
        torchsave.load(tmp_path / "short.pth")
    header = b"".join(pickle.dumps(v, 2) for v in (123, 1001, {}))
    (tmp_path / "magic.pth").write_bytes(header)
    with pytest.raises(torchsave.TorchSaveError, match="magic"):
        torchsave.load(tmp_path / "magic.pth")
    (tmp_path / "text.pth").write_bytes(b"hello")
    with pytest.raises(torchsave.TorchSaveError, match="not a torch.save file"):
        torchsave.load(tmp_path / "text.pth")


def test_weights_that_are_not_a_bottleneck_resnet(tmp_path):
    weights = medicalnet.read_backbone_weights(DATA / "medicalnet_tiny.pth")
    with pytest.raises(medicalnet.MedicalNetWeightsError, match="missing weight layer2.0.bn2.running_var"):
        medicalnet.build_resnet({k: v for k, v in weights.items() if k != "layer2.0.bn2.running_var"})
    with pytest.raises(medicalnet.MedicalNetWeightsError, match="not used"):
        medicalnet.build_resnet({**weights, "layer1.0.conv4.weight": np.zeros((1, 1, 1, 1, 1), np.float32)})
    with pytest.raises(medicalnet.MedicalNetWeightsError, match="bottleneck"):
        medicalnet.stage_depths({k: v for k, v in weights.items() if not k.startswith("layer4")})
    with pytest.raises(medicalnet.MedicalNetWeightsError, match="conv1.weight"):
        medicalnet.backbone_weights({"state_dict": {"fc.weight": np.zeros(2)}})
    np.savez(tmp_path / "w.npz", **weights)
    assert set(medicalnet.read_backbone_weights(tmp_path / "w.npz")) == set(weights)
