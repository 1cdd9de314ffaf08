"""Weights cache: conversion from the wheels, local files, and clear errors when offline."""
import concurrent.futures
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tf3dstylegan.metrics import weights


def test_offline_and_bad_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TF3DSTYLEGAN_CACHE", str(tmp_path / "cache"))
    assert weights.cache_dir() == tmp_path / "cache"
    with pytest.raises(weights.WeightsError, match="missing"):
        weights.ensure_weights("inception", download=False)
    with pytest.raises(ValueError, match="unknown weights"):
        weights.ensure_weights("vgg")
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(weights.WeightsError, match="expected a .npz"):
        weights.read_network_weights("inception", tmp_path / "w.h5")
    with pytest.raises(weights.WeightsError, match="no such file"):
        weights.read_network_weights("inception", tmp_path / "nope.npz")
    bad_wheel = tmp_path / "bad.whl"
    bad_wheel.write_bytes(b"not a zip")
    with pytest.raises(weights.WeightsError, match="cannot read"):
        weights.read_network_weights("deepbet", bad_wheel)


@pytest.mark.slow
def test_wheel_conversion_round_trip(tmp_path):
    try:
        npz = weights.ensure_weights("deepbet")
    except weights.WeightsError as e:
        pytest.skip(f"deepbet wheel unavailable (offline?): {e}")
    wheel = weights.cache_dir() / "wheels" / weights.SOURCES["deepbet"]["wheel"]
    from_npz, from_wheel = weights.read_network_weights("deepbet", npz), weights.read_network_weights("deepbet", wheel)
    assert set(from_npz) == set(from_wheel) and from_npz["init.0.weight"].shape == (16, 1, 7, 7, 7)
    for key in from_npz:
        np.testing.assert_array_equal(from_npz[key], np.asarray(from_wheel[key]))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # jobs converting at once: each writes its own file
        converted = set(pool.map(lambda _: weights.convert_wheel("deepbet", wheel, tmp_path / "d.npz"), range(4)))
    assert converted == {tmp_path / "d.npz"} and not list(tmp_path.glob(".*"))
    again = weights.read_network_weights("deepbet", tmp_path / "d.npz")
    np.testing.assert_array_equal(again["init.0.weight"], from_npz["init.0.weight"])


@pytest.mark.parametrize("pip_writes, code, problem", [(b"half a wh", 1, "pip download failed"),
                                                       (b"another wheel", 0, "sha256 mismatch")])
def test_a_failed_or_wrong_download_leaves_no_wheel(tmp_path, monkeypatch, pip_writes, code, problem):
    def pip(cmd, **kwargs):  # what pip leaves in its -d folder
        (Path(cmd[cmd.index("-d") + 1]) / weights.SOURCES["deepbet"]["wheel"]).write_bytes(pip_writes)
        return subprocess.CompletedProcess(cmd, code, "", "network down" if code else "")

    monkeypatch.setattr(weights.subprocess, "run", pip)
    with pytest.raises(weights.WeightsError, match=problem):
        weights.download_wheel("deepbet", tmp_path / "wheels")
    assert list((tmp_path / "wheels").iterdir()) == []


def test_command_reports_cached_paths(tmp_path, capsys):
    from tf3dstylegan import cli
    cache = tmp_path / "cache"
    cache.mkdir()
    np.savez(cache / weights.SOURCES["deepbet"]["npz"], x=np.zeros(2))
    argv = ["metrics-weights", "--which", "deepbet", "--cache_dir", str(cache)]
    assert cli.run("tf3dstylegan.commands.metrics_weights", argv) == 0
    assert str(cache / weights.SOURCES["deepbet"]["npz"]) in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.run("tf3dstylegan.commands.metrics_weights", argv[:1] + ["--which", "vgg"])
    assert exit_info.value.code == 2 and "--which: unknown weights ['vgg']" in capsys.readouterr().err
