"""Probe 2026-12-01, conditions and projection: --cond and --sweep values far outside the data (N28, N29, N33),
a bad label encoding in a .keras (N110), project's normalisation taken from the training data, targets that are
clipped or touch a face of the grid, and outputs that cannot be written (N105)."""
import json
import os

import keras
import nibabel as nib
import numpy as np
import pytest

from tf3dstylegan import cli
from tf3dstylegan.config import load_config
from tf3dstylegan.data.labels import LabelEncoding
from tf3dstylegan.networks import build_generator

TINY = dict(base_size=[2, 2, 2], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2)  # 4x4x4 volumes of 2 mm
ENCODING = LabelEncoding.fit(["age", "sex"], ["continuous", "categorical"],
                             [{"age": a, "sex": s} for a, s in [(55, "F"), (70, "M"), (85, "F"), (62, "M")]])


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("networks")
    keras.utils.set_random_seed(0)
    build_generator(load_config("2mm-fd16", label_size=3, label_encoding=json.dumps(ENCODING.to_json()),
                                **TINY)).save(folder / "cond.keras")
    build_generator(load_config("2mm-fd16", data_normalize="percentile", **TINY)).save(folder / "pct.keras")
    return folder


def run(name, capsys, *argv):
    """(exit code, stdout lines, stderr lines) of a command in-process."""
    capsys.readouterr()
    try:
        code = cli.run(f"tf3dstylegan.commands.{name}", [name, *map(str, argv)])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


def test_a_condition_too_far_for_a_label_names_the_flag(tmp_path, networks, capsys):
    """N28: --cond age=1e308 said only 'labels must be finite'."""
    code, _, err = run("generate", capsys, "--network", networks / "cond.keras", "--outdir", tmp_path / "o",
                       "--seeds", "0", "--cond", "age=1e308,sex=F")
    assert code == 2 and err == ["generate: error: --cond: covariate 'age' = 1e+308 is too far from the data (mean "
                                 "68, std 11.16) to be encoded as a float32 label"]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_condition_outside_the_training_data_is_warned_about(tmp_path, networks, capsys):
    """N29: --cond age=1e30 (training ages 55-85) wrote a volume without a word."""
    code, out, err = run("generate", capsys, "--network", networks / "cond.keras", "--outdir", tmp_path / "o",
                         "--seeds", "0", "--cond", "age=1e30,sex=F")
    assert code == 0, err
    assert out[0] == ("warning: --cond: age=1e30 is 8.96e+28 standard deviations from the training data's mean (68, "
                      "std 11.16): the network never saw such a condition")
    code, out, _ = run("generate", capsys, "--network", networks / "cond.keras", "--outdir", tmp_path / "p",
                       "--seeds", "0", "--cond", "age=72,sex=F")
    assert code == 0 and not [line for line in out if line.startswith("warning")]


@pytest.mark.parametrize("sweep, message", [
    ("age=-1e308:1e308:3", "--sweep: '-1e308:1e308:3': the range from -1e308 to 1e308 is too wide to divide"),  # N33
    ("age=0:1e308:3", "--sweep: covariate 'age' = 5e+307 is too far from the data"),
])
def test_a_sweep_that_cannot_be_encoded_blames_the_sweep(tmp_path, networks, capsys, sweep, message):
    code, _, err = run("generate", capsys, "--network", networks / "cond.keras", "--outdir", tmp_path / "o",
                       "--seeds", "0", "--sweep", sweep, "--cond", "sex=F")
    assert code == 2 and len(err) == 1 and err[0].startswith(f"generate: error: {message}"), err


def test_a_keras_with_a_bad_label_encoding_is_named(tmp_path, networks):
    """N110: a covariate with std 0 said 'not a label encoding: bad covariate entry' without the file."""
    import zipfile
    from tf3dstylegan.loading import load_network
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(networks / "cond.keras") as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                description = json.loads(data)
                encoding = json.loads(description["config"]["config"]["label_encoding"])
                encoding["covariates"][0]["std"] = 0.0
                description["config"]["config"]["label_encoding"] = json.dumps(encoding)
                data = json.dumps(description).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=rf"^{bad}: not a tf3dstylegan network \(not a label encoding: bad covariate"):
        load_network(bad)


def scan(path, volume):
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def raw_scan(path, high=978.0, touch=False):
    """A 4x4x4 'raw scan': a bright centre on a darker head, values 0..high; touch: the head fills a face."""
    volume = np.zeros((4, 4, 4))
    volume[1:3, 1:3, 1:3] = high
    volume[1:3, 0 if touch else 1, 1:3] = 0.6 * high
    return scan(path, volume)


@pytest.mark.slow
def test_project_normalises_like_the_training_data(tmp_path, networks, capsys):
    code, out, err = run("project", capsys, "--network", networks / "pct.keras", "--target",
                         raw_scan(tmp_path / "t.nii"), "--outdir", tmp_path / "p", "--steps", "1")
    assert code == 0, err
    assert out[0] == "--normalize percentile (as the training data)"
    target = nib.load(str(tmp_path / "p" / "target.nii.gz")).get_fdata()
    assert target.max() == pytest.approx(1.0) and np.mean(target == 1.0) < 0.2  # not the clipped all-white target


@pytest.mark.slow
def test_project_refuses_a_nearly_all_clipped_target_and_warns_below(tmp_path, networks, capsys):
    """The probe's raw scan with --normalize none: 83% white and SSIM 0.40, without a word."""
    white = scan(tmp_path / "white.nii", np.full((4, 4, 4), 978.0) * np.linspace(0.5, 1, 4))
    code, _, err = run("project", capsys, "--network", networks / "pct.keras", "--target", white, "--outdir",
                       tmp_path / "p", "--steps", "1", "--normalize", "none")
    assert code == 2 and err[0].startswith(f"project: error: {white}: --normalize none clips 100% of its voxels")
    assert not (tmp_path / "p").exists()
    some = np.full((4, 4, 4), 0.5)
    some[0, 0, :2] = 3.0  # 2 of 64 voxels (3%) above 1
    code, out, err = run("project", capsys, "--network", networks / "pct.keras", "--target",
                         scan(tmp_path / "some.nii", some), "--outdir", tmp_path / "q", "--steps", "1",
                         "--normalize", "none")
    assert code == 0, err
    assert f"warning: {tmp_path / 'some.nii'}: --normalize none clipped 3.1% of its voxels to 0 or 1" in out[0]


@pytest.mark.slow
def test_project_warns_when_the_brain_touches_a_face(tmp_path, networks, capsys):
    code, out, err = run("project", capsys, "--network", networks / "pct.keras", "--target",
                         raw_scan(tmp_path / "t.nii", touch=True), "--outdir", tmp_path / "p", "--steps", "1")
    assert code == 0, err
    assert any(line.startswith(f"warning: {tmp_path / 't.nii'}: the brain touches the grid's posterior face (y = 0)")
               and "dataset_tool.py prepare" in line for line in out), out


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path, networks, capsys, monkeypatch):
    """N105: project and metrics failed only after projecting / computing (a read-only mount: os.access says no)."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(readonly) else
                        real_access(path, mode))
    code, _, err = run("project", capsys, "--network", networks / "pct.keras", "--target",
                       raw_scan(tmp_path / "t.nii"), "--outdir", readonly / "p", "--steps", "1")
    assert code == 2 and err == [f"project: error: --outdir: {readonly / 'p'}: cannot be written ({readonly} is "
                                 "read-only)"]
    code, _, err = run("metrics", capsys, "--network", networks / "pct.keras", "--out", readonly / "m.json")
    assert code == 2 and err == [f"metrics: error: --out: {readonly}: cannot be written (read-only)"]
