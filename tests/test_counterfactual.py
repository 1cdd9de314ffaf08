"""Counterfactuals of a projected scan: projections that record their network and condition, the remap and shift
edits, generate.py --projected (--cond / --sweep) and its one-line errors."""
import json

import keras
import nibabel as nib
import numpy as np
import pytest

from tf3dstylegan import cli, conditions, projector
from tf3dstylegan import counterfactual as cf
from tf3dstylegan.config import load_config
from tf3dstylegan.data.labels import LabelEncoding
from tf3dstylegan.data.nifti import save_volume
from tf3dstylegan.sampling import synthesize
from tf3dstylegan.networks import build_generator
from tf3dstylegan.projections import load_projection, save_projection

TOL = 1e-5  # float32 rounding of the same tiny network evaluated through differently compiled paths
SAMPLES = 200  # sample latents of the w statistics: enough for a tiny network, fast
TINY = dict(base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2)  # 4x4x6 volumes
ENCODING = LabelEncoding.fit(["age", "sex"], ["continuous", "categorical"],
                             [{"age": a, "sex": s} for a, s in [(55, "F"), (70, "M"), (85, "F"), (62, "M")]])


def tiny_generator(label_size=3, encoded=True, seed=5):
    keras.utils.set_random_seed(seed)
    encoding = json.dumps(ENCODING.to_json()) if encoded and label_size else ""
    return build_generator(load_config("2mm-fd16", label_size=label_size, label_encoding=encoding, **TINY))


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@pytest.fixture(scope="module")
def projected(G, tmp_path_factory):
    """projected_w.npz files of one target (age 70, F) in W and in Z, the Projections and the target [X, Y, Z, C]."""
    folder = tmp_path_factory.mktemp("projections")
    target = np.asarray(G(np.random.RandomState(1).randn(1, G.latent_size), labels=ENCODING.encode(
        {"age": 70, "sex": "F"})[np.newaxis]))[0]
    results = {}
    for space in ("w", "z"):
        results[space] = projector.project(G, target, num_steps=3, w_avg_samples=SAMPLES, space=space,
                                           labels=ENCODING.encode({"age": 70, "sex": "F"}))
        save_projection(folder / f"{space}.npz", G, results[space])
    return folder, results, target


@pytest.fixture(scope="module")
def scan_file(projected, tmp_path_factory):
    """A scan of the W projection as project.py writes its target (target.nii.gz, [0, 1]: here the reconstruction
    plus detail it misses); a scan of another subject, one out of range and one off the grid."""
    folder = tmp_path_factory.mktemp("scans")
    rng = np.random.default_rng(3)
    reconstruction = projected[1]["w"].reconstruction[..., 0]
    detail = 0.3 * reconstruction.std() * rng.standard_normal(reconstruction.shape)
    scan = np.clip((reconstruction + detail + 1) / 2, 0, 1)
    save_volume(folder / "target.nii.gz", scan.astype(np.float32), 2.0)
    other = rng.uniform(0, 1, projected[2].shape[:3]).astype(np.float32)
    save_volume(folder / "other.nii.gz", other, 2.0)
    save_volume(folder / "bright.nii.gz", other * 255, 2.0)
    save_volume(folder / "small.nii.gz", other[:2], 2.0)
    return folder


@pytest.fixture(scope="module")
def saved(G, tmp_path_factory):
    """.keras files: G, the same architecture with other weights, one without covariate names, an unconditional."""
    folder = tmp_path_factory.mktemp("networks")
    for name, network in [("cond", G), ("other", tiny_generator(seed=6)), ("raw", tiny_generator(encoded=False)),
                          ("uncond", tiny_generator(0))]:
        network.save(folder / f"{name}.keras")
    return folder


def test_projection_records_its_condition_and_network(G, projected):
    folder, results, _ = projected
    for space in ("w", "z"):
        subject = load_projection(folder / f"{space}.npz", G)
        assert subject.space == space and subject.condition == pytest.approx({"age": 70, "sex": "F"})
        np.testing.assert_array_equal(subject.w, results[space].w)
        np.testing.assert_array_equal(subject.labels, results[space].labels)
    z = load_projection(folder / "z.npz", G).z
    np.testing.assert_allclose(np.mean(z ** 2), 1.0, rtol=1e-5)  # kept on the sphere the mapping normalises to
    np.testing.assert_allclose(results["z"].w, G.mapping(z, results["z"].labels[np.newaxis]), atol=TOL)
    with pytest.raises(ValueError, match="made with another network"):
        load_projection(folder / "z.npz", tiny_generator(seed=6))


@pytest.mark.parametrize("space", ["w", "z"])
def test_editing_to_its_own_condition_gives_back_the_projection(G, projected, space):
    subject = load_projection(projected[0] / f"{space}.npz", G)
    own = cf.counterfactuals(G, subject, subject.labels[np.newaxis], num_samples=SAMPLES)[0]
    np.testing.assert_allclose(own, projected[1][space].reconstruction, atol=TOL)


@pytest.mark.parametrize("space", ["w", "z"])
def test_an_edit_with_the_scan_keeps_its_residual_and_changes_what_the_model_changes(G, projected, space):
    subject = load_projection(projected[0] / f"{space}.npz", G)
    target = projected[2]
    labels = np.stack([subject.labels, ENCODING.encode({"age": 85, "sex": "M"})])
    plain = cf.counterfactuals(G, subject, labels, num_samples=SAMPLES)
    np.testing.assert_allclose(cf.reconstruction(G, subject), projected[1][space].reconstruction, atol=TOL)
    kept = cf.counterfactuals(G, subject, labels, num_samples=SAMPLES, residual=target - cf.reconstruction(G, subject))
    np.testing.assert_allclose(kept[0], target, atol=TOL)  # its own condition: the scan itself
    np.testing.assert_allclose(kept[1] - target, plain[1] - plain[0], atol=TOL)  # the model's change, on the scan
    assert np.max(np.abs(plain[1] - plain[0])) > 1e-3 and np.max(np.abs(target - plain[0])) > 1e-3


def test_a_shift_computes_each_conditions_mean_w_once(G, projected, monkeypatch):
    subject = load_projection(projected[0] / "w.npz", G)
    calls = []
    mean_w = cf.mean_w
    monkeypatch.setattr(cf, "mean_w", lambda G, labels, num_samples: calls.append(labels) or mean_w(G, labels, 50))
    old = ENCODING.encode({"age": 85, "sex": "M"})
    ws = cf.edited_styles(G, subject, np.stack([subject.labels, old, old]), "shift")
    assert len(calls) == 2  # the own condition (also the first edit) and the other one
    np.testing.assert_allclose(ws[0], subject.w[0], atol=1e-6)  # to its own condition: no shift
    np.testing.assert_array_equal(ws[1], ws[2])


def test_a_scan_is_checked(G, projected):
    target = projected[2]
    np.testing.assert_allclose(cf.check_scan(G, (target + 1) / 2), target, atol=1e-6)
    for scan, problem in [(((target + 1) / 2)[:2], "is not the network's grid"),
                          (np.full_like(target, np.nan), "are NaN or Inf"),
                          ((target + 1) * 100, "are not the network's \\[0, 1\\]")]:
        with pytest.raises(ValueError, match=problem):
            cf.check_scan(G, scan)


@pytest.mark.slow
def test_remap_and_shift_edits(G, projected):
    old = ENCODING.encode({"age": 85, "sex": "M"})
    subject = load_projection(projected[0] / "z.npz", G)
    remapped = cf.edited_styles(G, subject, old[np.newaxis], "remap")
    np.testing.assert_allclose(remapped, G.mapping(subject.z, old[np.newaxis]), atol=TOL)
    shifted = cf.edited_styles(G, subject, old[np.newaxis], "shift", SAMPLES)
    move = cf.mean_w(G, old, SAMPLES) - cf.mean_w(G, subject.labels, SAMPLES)
    np.testing.assert_allclose(shifted - subject.w, np.broadcast_to(move, shifted.shape), atol=TOL)
    assert np.max(np.abs(move)) > 1e-3  # the condition moves w
    volume = cf.counterfactuals(G, subject, old[np.newaxis], "remap")
    np.testing.assert_allclose(volume, synthesize(G, remapped, noise=subject.noises), atol=TOL)
    with pytest.raises(ValueError, match="made in W"):
        cf.resolve_edit(load_projection(projected[0] / "w.npz", G), "remap")


def test_edit_conditions_keep_the_projection_own_values(G, projected):
    subject = load_projection(projected[0] / "w.npz", G)
    full, changed = cf.edit_conditions(G, subject, "sex=M", ("age", [60.0, 80.0]))
    assert [c["sex"] for c in full] == ["M", "M"] and [c["age"] for c in full] == [60.0, 80.0]
    assert cf.edit_names(changed) == ["age-60-sex-M", "age-80-sex-M"]
    full, _ = cf.edit_conditions(G, subject, {"sex": "M"})
    assert full[0]["age"] == pytest.approx(70.0)
    with pytest.raises(ValueError, match="outside the training data's range"):
        cf.edit_conditions(G, subject, {"age": 150})
    assert cf.edit_conditions(G, subject, {"age": 150}, extrapolate=True)[0][0]["age"] == 150


def run_generate(capsys, *argv):
    """generate.py in-process: (exit code, stdout lines, stderr lines)."""
    try:
        code = cli.run("tf3dstylegan.commands.generate", ["generate.py", *[str(a) for a in argv]])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


@pytest.mark.slow
def test_sweep_and_single_edit_commands(G, saved, projected, scan_file, tmp_path, capsys):
    code, _, err = run_generate(capsys, "--network", saved / "cond.keras", "--projected", projected[0] / "z.npz",
                                "--sweep", "age=50:90:3", "--cond", "sex=M", "--outdir", tmp_path / "sweep")
    assert code == 0, err
    names = ["age-50-sex-M", "age-70-sex-M", "age-90-sex-M"]
    for name in names:
        assert nib.load(tmp_path / "sweep" / f"counterfactual-{name}.nii.gz").shape == G.img_shape[:3]
    info = json.loads((tmp_path / "sweep" / "counterfactual.json").read_text())
    assert info["edit"] == "remap" and info["projection_condition"] == pytest.approx({"age": 70, "sex": "F"})
    assert [e["condition"] for e in info["edits"]] == [{"age": a, "sex": "M"} for a in (50.0, 70.0, 90.0)]
    subject = load_projection(projected[0] / "z.npz", G)
    expected = cf.counterfactuals(G, subject, np.stack([conditions.encode_condition(G, c) for c in
                                                        [e["condition"] for e in info["edits"]]]))
    reference = nib.load(tmp_path / "sweep" / "projection.nii.gz").get_fdata()
    for name, volume in zip(names, expected):
        written = nib.load(tmp_path / "sweep" / f"counterfactual-{name}.nii.gz").get_fdata()
        np.testing.assert_allclose(written, (volume[..., 0] + 1) / 2, atol=TOL)
        difference = nib.load(tmp_path / "sweep" / f"difference-{name}.nii.gz").get_fdata()
        np.testing.assert_allclose(difference, written - reference, atol=TOL)
    for png in ("counterfactual.png", "difference.png"):
        assert (tmp_path / "sweep" / png).stat().st_size > 0
    code, _, err = run_generate(capsys, "--network", saved / "cond.keras", "--projected", projected[0] / "w.npz",
                                "--cond", "age=80", "--outdir", tmp_path / "one")
    assert code == 0, err
    info = json.loads((tmp_path / "one" / "counterfactual.json").read_text())
    assert info["edit"] == "shift" and [e["file"] for e in info["edits"]] == ["counterfactual-age-80.nii.gz"]
    assert info["scan"] is None
    code, out, err = run_generate(capsys, "--network", saved / "cond.keras", "--projected", projected[0] / "w.npz",
                                  "--cond", "age=80", "--scan", scan_file / "target.nii.gz",
                                  "--outdir", tmp_path / "on")
    assert code == 0 and "on the scan" in out[-1], err
    info = json.loads((tmp_path / "on" / "counterfactual.json").read_text())
    assert info["scan"] == str(scan_file / "target.nii.gz") and not (tmp_path / "on" / "projection.nii.gz").exists()
    assert not any(line.startswith("warning") for line in out), out
    scan = nib.load(tmp_path / "on" / "scan.nii.gz").get_fdata()
    np.testing.assert_allclose(scan, nib.load(scan_file / "target.nii.gz").get_fdata(), atol=TOL)
    reconstructed = cf.reconstruction(G, load_projection(projected[0] / "w.npz", G))
    assert info["scan_ncc_with_reconstruction"] == pytest.approx(
        np.corrcoef(scan.ravel() * 2 - 1, reconstructed.ravel())[0, 1], abs=1e-5)
    code, out, err = run_generate(capsys, "--network", saved / "cond.keras", "--projected", projected[0] / "w.npz",
                                  "--cond", "age=80", "--scan", scan_file / "other.nii.gz", "--outdir", tmp_path / "o")
    assert code == 0 and any(line.startswith("warning: --scan") and "is it the scan" in line for line in out), out
    change = (nib.load(tmp_path / "one" / "difference-age-80.nii.gz").get_fdata())
    written = nib.load(tmp_path / "on" / "counterfactual-age-80.nii.gz").get_fdata()
    np.testing.assert_allclose(written, np.clip(scan + change, 0, 1), atol=TOL)



def test_an_edit_on_the_scan_synthesises_once(saved, projected, scan_file, tmp_path, capsys, monkeypatch):
    synthesize, calls = cf.synthesize, []
    monkeypatch.setattr(cf, "synthesize", lambda G, ws, **kw: calls.append(len(ws)) or synthesize(G, ws, **kw))
    code, _, err = run_generate(capsys, "--network", saved / "cond.keras", "--projected", projected[0] / "w.npz",
                                "--sweep", "age=60:80:2", "--scan", scan_file / "target.nii.gz",
                                "--outdir", tmp_path / "on")
    assert code == 0, err
    assert calls == [3], calls  # the reconstruction (own condition) and both edits in one call


BAD = [
    ("cond", "z", ["--cond", "bmi=30"], "--cond: unknown covariate 'bmi'"),
    ("cond", "z", ["--cond", "age=150"], "--cond: age=150 is outside the training data's range"),
    ("cond", "z", ["--sweep", "age=20:90:3"], "--sweep: age=20.0 is outside the training data's range"),
    ("cond", "z", ["--sweep", "age=50:90"], "--sweep: ... start:stop:count"),
    ("cond", "z", ["--sweep", "weight=1:2:3"], "--sweep: unknown covariate 'weight'"),
    ("cond", "z", ["--sweep", "age=50:90:3", "--cond", "age=60"], "--cond: covariate 'age' is swept"),
    ("cond", "w", ["--cond", "age=60", "--edit", "remap"], "--edit: remap re-maps the projected z"),
    ("cond", "z", [], "--projected: give the covariates to change"),
    ("cond", "z", ["--cond", "age=60", "--seeds", "0"], "--projected: runs without seeds"),
    ("cond", "z", ["--cond_vector", "1,0,1"], "--cond_vector: a counterfactual changes covariates by name"),
    ("other", "z", ["--cond", "age=60"], "--projected: ... made with another network"),
    ("uncond", "z", ["--cond", "age=60"], "--network: this network is unconditional"),
    ("raw", "z", ["--cond", "age=60"], "--network: this network is conditional (label_size 3, covariates not named)"),
    ("cond", "w", ["--cond", "age=60", "--scan", "SCANS/bright.nii.gz"], "--scan: ... are not the network's [0, 1]"),
    ("cond", "w", ["--cond", "age=60", "--scan", "SCANS/small.nii.gz"], "--scan: ... is not the network's grid"),
    ("cond", "w", ["--cond", "age=60", "--scan", "SCANS/none.nii.gz"], "--scan: ... no such file"),
]


@pytest.mark.parametrize("network, space, flags, problem", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_counterfactual_input_is_one_line_and_writes_nothing(saved, projected, scan_file, tmp_path, capsys,
                                                                 network, space, flags, problem):
    flags = [str(f).replace("SCANS", str(scan_file)) for f in flags]
    code, _, err = run_generate(capsys, "--network", saved / f"{network}.keras", "--projected",
                                projected[0] / f"{space}.npz", *flags, "--outdir", tmp_path / "out")
    start, _, middle = problem.partition(" ... ")  # the flag and the start of its message, or a part of it
    assert code == 2 and len(err) == 1 and err[0].startswith(f"generate.py: error: {start}"), err
    assert middle in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_extrapolate_allows_a_value_outside_the_range(saved, projected, tmp_path, capsys):
    code, _, err = run_generate(capsys, "--network", saved / "cond.keras", "--projected", projected[0] / "z.npz",
                                "--cond", "age=150", "--extrapolate", "--outdir", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "counterfactual-age-150.nii.gz").is_file()


def test_damaged_or_foreign_projection_files(G, projected, tmp_path):
    old = tmp_path / "old.npz"
    np.savez(old, w=projected[1]["w"].w)  # what project.py wrote before projections recorded their network
    with pytest.raises(ValueError, match="records neither its network nor its condition"):
        load_projection(old, G)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a projected_w.npz"):
        load_projection(tmp_path / "text.npz", G)
    with np.load(projected[0] / "z.npz") as npz:
        members = dict(npz)
    np.savez(tmp_path / "big.npz", **{**members, "w": np.zeros((1, G.num_ws, 4096), np.float32)})
    with pytest.raises(ValueError, match="more than this network's w needs"):
        load_projection(tmp_path / "big.npz", G)
    np.savez(tmp_path / "nan.npz", **{**members, "z": np.full_like(members["z"], np.nan)})
    with pytest.raises(ValueError, match="expected finite float32"):
        load_projection(tmp_path / "nan.npz", G)


def test_project_command_takes_z_or_w_plus(saved, tmp_path, capsys):
    (tmp_path / "scan.nii.gz").write_bytes(b"the flags are checked before the scan is read")
    argv = ["project.py", "--network", saved / "cond.keras", "--target", tmp_path / "scan.nii.gz", "--outdir",
            tmp_path / "p", "--cond", "age=70,sex=F", "--space", "z", "--w_plus"]
    try:
        code = cli.run("tf3dstylegan.commands.project", [str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["project.py: error: --w_plus: W+ is a space of ws: give --w_plus or --space z, "
                                 "not both"], err
    with pytest.raises(ValueError, match="W\\+ is a space of ws"):
        projector.project(tiny_generator(), np.zeros((4, 4, 6, 1), np.float32), num_steps=1, space="z", w_plus=True,
                          labels=ENCODING.encode({"age": 70, "sex": "F"}))
