"""Probe 2026-12-01, metrics: weight files that claim more than the network needs are refused before allocating
(N62-N68), cache entries are used only when they verify (N47-N53), the flags that made no sense are refused
(N56-N58, N72), and the 95 % range holds the value it belongs to."""
import io
import zipfile

import numpy as np
import pytest

from test_metrics_torchscript import _archive, _module, _str, _tensor
from tf3dstylegan import cli
from tf3dstylegan.metrics import intervals, measures, medicalnet, real_cache, report, torchsave, weights


def torch_save_zip(path, tensors, storages):
    """A torch.save zip archive (torch >= 1.6 layout) of {name: tensor pickle bytes}."""
    body = b"".join(_str(name) + tensor for name, tensor in tensors.items())
    path.write_bytes(_archive(b"\x80\x02}(" + body + b"u.", storages))
    return path


STRIDE_ZERO = _tensor("0", "FloatStorage", 1, 0, [2 ** 15, 2 ** 15], [0, 0])  # 4 GiB viewed over 4 bytes
ONE = {"0": np.ones(1, np.float32)}


def test_a_stride_zero_tensor_is_refused_before_it_is_made(tmp_path):
    """N63/N64: a 536-byte .pth viewing one float as [2^15, 2^15] passed 3 GB (or was a 3.64 TiB traceback)."""
    path = torch_save_zip(tmp_path / "zero.pth", {"conv1.weight": STRIDE_ZERO}, ONE)
    assert path.stat().st_size < 2000
    with pytest.raises(torchsave.TorchSaveError, match=r"tensor of size \(32768, 32768\) with strides \(0, 0\) views "
                                                       r"1,073,741,824 elements of a storage of 1: repeated"):
        torchsave.load(path)
    from tf3dstylegan.metrics.extractors import FeatureExtractors
    big = torch_save_zip(tmp_path / "big.pth", {"conv1.weight": _tensor("0", "FloatStorage", 1, 0, [10 ** 6] * 2,
                                                                        [0, 0])}, ONE)
    with pytest.raises(ValueError, match=r"big.pth: .*views 1,000,000,000,000 elements"):  # N63 through the metrics
        FeatureExtractors(["fid_medicalnet"], medicalnet_weights=str(big))


def test_a_storage_larger_than_the_network_is_refused_before_it_is_read(tmp_path):
    """N65: a 4 MB .pth whose storage inflates to 4 GiB; the budget is checked before the member is read."""
    claim = _tensor("0", "FloatStorage", 2 ** 30, 0, [2 ** 30], [1])
    path = torch_save_zip(tmp_path / "bomb.pth", {"conv1.weight": claim}, ONE)
    with pytest.raises(torchsave.TorchSaveError, match=r"storage 0: 1,073,741,824 elements are more than the expected "
                                                       r"network's weights need \(at most 134,217,728 in all\)"):
        medicalnet.read_backbone_weights(path)


def test_a_torchscript_stride_zero_tensor_is_refused(tmp_path):
    """N66: the same trick in a TorchScript .pt given as --inception_weights."""
    path = tmp_path / "zero.pt"
    path.write_bytes(_archive(b"\x80\x02" + _module("__torch__.m", "M", [("w", STRIDE_ZERO)]) + b".", ONE))
    with pytest.raises(weights.WeightsError, match=rf"^{path}: tensor of size \(32768, 32768\) with strides"):
        weights.read_network_weights("inception", path)


def npz_claiming(path, shape, dtype="<f4"):
    """An .npz whose member's .npy header claims `shape` but holds 16 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conv1.weight.npy", header.getvalue() + b"\0" * 16)
    return path


def test_an_npz_bomb_is_refused_from_its_headers(tmp_path):
    """N67: an .npz member inflating to a 4 GiB float32 array was read whole."""
    path = npz_claiming(tmp_path / "bomb.npz", (2 ** 30,))
    with pytest.raises(medicalnet.MedicalNetWeightsError, match=r"bomb.npz: its arrays hold more than 134,217,728"):
        medicalnet.read_backbone_weights(path)
    with pytest.raises(weights.WeightsError, match=r"bomb.npz: its arrays hold more than 67,108,864"):
        weights.read_network_weights("deepbet", path)
    with pytest.raises(weights.WeightsError, match=r"holds \|O values, not numbers|holds object values"):
        weights.read_network_weights("deepbet", npz_claiming(tmp_path / "objects.npz", (2,), "|O"))


def test_weights_paths_that_are_not_files_say_what_they_are(tmp_path):
    """N68: a folder and a symlink loop were 'no such file'."""
    from tf3dstylegan.metrics.extractors import check_weight_files
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for path, problem in ((tmp_path, "is a folder, not a weights file"),
                          (tmp_path / "loop", "is a broken or looping symbolic link"),
                          (tmp_path / "missing.pth", "no such file")):
        with pytest.raises(ValueError, match=rf"medicalnet_weights: {path}: {problem}"):
            check_weight_files(["fid_medicalnet"], medicalnet_weights=str(path))


ENTRY = {"a/msssim": np.array([0.5, 0.6]), "mmd_real": np.array([46.659, 40.0])}


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:300]),  # N47: truncated
    lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000)),  # N48: random bytes
])
def test_damaged_cache_entries_are_not_read(tmp_path, damage):
    path = tmp_path / "entry.npz"
    real_cache.save(path, ENTRY)
    assert {k: v.tolist() for k, v in real_cache.load(path).items()} == {k: v.tolist() for k, v in ENTRY.items()}
    damage(path)
    assert real_cache.load(path) is None


@pytest.mark.parametrize("edit", [
    lambda arrays: arrays.pop("mmd_real"),  # N49: a missing array
    lambda arrays: arrays.update(mmd_real=np.array([np.nan, 1.0])),  # N50: NaN
    lambda arrays: arrays.update(mmd_real=np.array([0.001, 0.001])),  # N51: edited values
    lambda arrays: arrays.update(mmd_real=np.array(["x", "y"])),  # N52: strings
])
def test_edited_cache_entries_do_not_verify(tmp_path, edit):
    path = tmp_path / "entry.npz"
    real_cache.save(path, ENTRY)
    with np.load(path) as stored:
        arrays = dict(stored)
    edit(arrays)
    np.savez(path, **arrays)  # the checksum inside is the original one
    assert real_cache.load(path) is None


def test_an_entry_that_cannot_be_written_leaves_the_results(tmp_path, capsys):
    """N53: an entry path that is a folder failed the run after computing; now a note, and the results."""
    from test_metrics_command import write_records
    from test_metrics_real_cache import CountingExtractors
    from test_metrics_runner import StandInG, real_volumes
    from tf3dstylegan.metrics import runner
    data, cache = write_records(tmp_path / "reals", (real_volumes(16)[..., 0] + 1) / 2), tmp_path / "cache"
    request = dict(metrics=["bmmd2"], num=8, batch_size=4, extractors=CountingExtractors())
    expected = runner.evaluate(StandInG(), data, **request)
    key = real_cache.cache_key(data, ["bmmd2"], 8, 4, True, "stub-1")
    real_cache.entry_path(key, cache).mkdir(parents=True)
    results = runner.evaluate(StandInG(), data, cache_dir=cache, cache_reals=True, **request)
    assert results == expected and "cannot write the real-volume cache entry" in capsys.readouterr().err


def test_the_range_holds_the_value_it_belongs_to():
    """A statistic biased by the sample count (as FID is): the halves lie above the full value, and the range
    reported is their spread moved onto the value."""
    values = np.random.default_rng(1).normal(size=200)

    def biased(x):
        return float(np.mean(x) + 100.0 / len(x))
    raw = intervals.spread_over_halves(biased, [values], 50)
    full = biased(values)
    assert raw[0] > full  # what the probe saw: 'real_fid_sagittal 21.021 [27.25, 33.146]'
    low, high = intervals.centred_range(biased, [values], full, 50)
    assert low <= full <= high and high - low == pytest.approx(raw[1] - raw[0])
    results = measures.measure([measures.Measurement("fid", biased, (values,))], num_halves=50)
    assert (results["fid_lo"], results["fid_hi"]) == (low, high)
    table = report.format_table({"fid": full, "fid_lo": low, "fid_hi": high, "fid_n": 200.0,
                                 "interval_method": intervals.METHOD})
    assert table.splitlines()[0].split() == ["metric", "value", "95%", "range", "n"]
    assert table.splitlines()[-1] == f"95% range: {intervals.METHOD}"


@pytest.mark.parametrize("flag, value, message", [
    ("truncation_psi", "nan", "--truncation_psi: must be a finite number in [-2, 2], got nan"),  # N57
    ("truncation_psi", "1e30", "--truncation_psi: must be a finite number in [-2, 2], got 1e+30"),  # N58
    ("seed", "-1", "--seed: must be >= 0, got -1"),  # N56
    ("effect_steps", "100000", "--effect_steps: must be in [2, 1000] (covariate values per latent), got 100000"),  # N72
])
def test_metrics_flags_that_make_no_sense_are_refused(tmp_path, capsys, flag, value, message):
    (tmp_path / "G.keras").write_bytes(b"never read")
    with pytest.raises(SystemExit) as stop:
        cli.run("tf3dstylegan.commands.metrics", ["metrics", "--network", str(tmp_path / "G.keras"), f"--{flag}",
                                                   value])
    assert stop.value.code == 2 and capsys.readouterr().err.strip() == f"metrics: error: {message}"


def test_generate_psi_is_bounded_like_metrics(tmp_path, capsys):
    """N58: generate --trunc 1e30 wrote a volume."""
    with pytest.raises(SystemExit) as stop:
        cli.run("tf3dstylegan.commands.generate", ["generate", "--network", str(tmp_path), "--outdir",
                                                    str(tmp_path / "out"), "--seeds", "0", "--trunc", "1e30"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == "generate: error: --trunc: must be a finite number in [-2, 2], got 1e+30"
    assert not (tmp_path / "out").exists()
