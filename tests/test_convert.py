"""`python -m tf3dstylegan convert`: .keras files that load back with identical outputs, and its errors."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import reference_crop
from legacy_writer import make_states, write_pickle
from tf3dstylegan.convert import convert


@pytest.mark.slow
def test_convert_writes_models_that_load_back(tmp_path, fixture_dir):
    report = convert(fixture_dir / "network.pkl", tmp_path / "out")
    assert report["parameters"]["G"]["trainable"] == 109418 and report["parameters"]["D"]["trainable"] == 117633
    data = np.load(fixture_dir / "reference.npz")
    G_ema = keras.models.load_model(tmp_path / "out" / "G_ema.keras")
    D = keras.models.load_model(tmp_path / "out" / "D.keras")
    images = G_ema(data["z"], noise_mode="const").numpy()
    np.testing.assert_allclose(reference_crop(images, "images"), data["images"], atol=1e-4)
    np.testing.assert_allclose(D(images).numpy(), data["scores"], atol=1e-4)
    saved = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    assert saved["config"]["fmap_max"] == 16 and np.isfinite(saved["seed0_volume"]["std"])
    assert not list((tmp_path / "out").glob("*.tmp*"))


@pytest.mark.slow
def test_convert_command_line(tmp_path):
    states = make_states(np.random.default_rng(3), base=(2, 2, 3), res=3, latent=4, dlatent=4, mapping_fmaps=4)
    write_pickle(tmp_path / "net.pkl", states)
    run = subprocess.run([sys.executable, "-m", "tf3dstylegan", "convert", str(tmp_path / "net.pkl"),
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "trainable parameters" in run.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"G.keras", "D.keras", "G_ema.keras"}
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x05garbage")
    bad = subprocess.run([sys.executable, "-m", "tf3dstylegan", "convert", str(tmp_path / "bad.pkl"),
                          str(tmp_path / "out2")], capture_output=True, text=True)
    assert bad.returncode != 0
    last = bad.stderr.strip().splitlines()[-1]
    assert str(tmp_path / "bad.pkl") in last and last.startswith("python -m tf3dstylegan convert: error:")
    assert not (tmp_path / "out2" / "G.keras").exists()
