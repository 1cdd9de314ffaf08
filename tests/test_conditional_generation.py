"""Conditional generation: conditions by name, labels through every generation function, covariate sweeps,
style mixing / interpolation / projection under a condition, the commands' flags and their errors."""
import json

import keras
import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

import tf3dstylegan
from tf3dstylegan import cli, conditions, projector
from tf3dstylegan import generate as gen
from tf3dstylegan.config import load_config
from tf3dstylegan.data.labels import LabelEncoding
from tf3dstylegan.data.nifti import save_volume
from tf3dstylegan.io import to_unit_range
from tf3dstylegan.networks import build_generator

TOL = 1e-5
TINY = dict(base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2)  # 4x4x6 volumes
ENCODING = LabelEncoding.fit(["age", "sex"], ["continuous", "categorical"],
                             [{"age": a, "sex": s} for a, s in [(55, "F"), (70, "M"), (85, "F"), (62, "M")]])


def tiny_generator(label_size=0, label_encoding="", seed=5):
    keras.utils.set_random_seed(seed)
    return build_generator(load_config("2mm-fd16", label_size=label_size, label_encoding=label_encoding, **TINY))


@pytest.fixture(scope="module")
def G():
    return tiny_generator(3, json.dumps(ENCODING.to_json()))


@pytest.fixture(scope="module")
def saved(G, tmp_path_factory):
    """.keras files: the conditional G, one with raw labels only (no saved names), an unconditional one."""
    folder = tmp_path_factory.mktemp("networks")
    for name, network in [("cond", G), ("raw", tiny_generator(3)), ("uncond", tiny_generator())]:
        network.save(folder / f"{name}.keras")
    return folder


def labels_of(**condition):
    return ENCODING.encode(condition)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def run_command(name, capsys, *argv):
    """A command in-process: (exit code, stderr lines)."""
    try:
        code = cli.run(f"tf3dstylegan.commands.{name}", [str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err.strip().splitlines()


def run_generate(capsys, *argv):
    return run_command("generate", capsys, "generate.py", *argv)


def test_condition_changes_the_volume_and_seed_plus_condition_fixes_it(G):
    old, young, male = labels_of(age=85, sex="F"), labels_of(age=55, sex="F"), labels_of(age=85, sex="M")
    volumes = gen.generate_volumes(G, [0, 1, 0, 0, 1], labels=np.stack([old, old, young, male, young]),
                                   batch_size=2)                                  # per-seed labels [N, L]
    np.testing.assert_array_equal(volumes[:2], gen.generate_volumes(G, [0, 1], labels=old, batch_size=2))
    assert max_diff(volumes[0], volumes[2]) > 1e-3 and max_diff(volumes[0], volumes[3]) > 1e-3
    assert max_diff(volumes[2], volumes[4]) > 1e-3                                 # the seed still matters
    z = np.stack([gen.seed_latent(G, s) for s in (0, 1)])
    np.testing.assert_allclose(volumes[[2, 4]], G(z, labels=np.stack([young, young])), atol=TOL)


def test_labels_are_checked(G):
    with pytest.raises(ValueError, match="conditional on age, sex"):
        gen.generate_volumes(G, [0])
    with pytest.raises(ValueError, match=r"expected \[3\] or \[2, 3\]"):
        gen.generate_volumes(G, [0, 1], labels=np.zeros([3, 3]))
    with pytest.raises(ValueError, match="finite"):
        gen.seed_styles(G, [0], labels=[np.nan, 0, 1])
    with pytest.raises(ValueError, match="unconditional"):
        gen.generate_volumes(tiny_generator(), [0], labels=labels_of(age=60, sex="F"))


def test_unconditional_generation_is_unchanged():
    U = tiny_generator()
    z = np.stack([gen.seed_latent(U, s) for s in (3, 4)])
    np.testing.assert_allclose(gen.generate_volumes(U, [3, 4], psi=0.5), U(z, truncation_psi=0.5), atol=TOL)


def test_parsing_and_encoding_conditions(G):
    assert conditions.parse_condition(" age = 72 ,sex=F") == {"age": "72", "sex": "F"}
    np.testing.assert_array_equal(conditions.encode_condition(G, "age=72,sex=F"), labels_of(age=72, sex="F"))
    for text, problem in [("age", "name=value"), ("age=1,,sex=F", "name=value"), ("age=1,age=2", "twice")]:
        with pytest.raises(ValueError, match=problem):
            conditions.parse_condition(text)
    for text, problem in [("age=70", "missing covariate 'sex'"), ("age=70,sex=F,bmi=3", "unknown covariate 'bmi'"),
                          ("age=70,sex=X", "unknown category 'X'"), ("age=old,sex=F", "finite number")]:
        with pytest.raises(ValueError, match=problem):
            conditions.encode_condition(G, text)
    np.testing.assert_array_equal(conditions.parse_vector("0.5,0,1"), [0.5, 0, 1])
    for text in ("0.5,x", "1,nan", ""):
        with pytest.raises(ValueError):
            conditions.parse_vector(text)
    assert conditions.parse_sweep("age=50:90:5", ENCODING) == ("age", [50.0, 60.0, 70.0, 80.0, 90.0])
    assert conditions.parse_sweep("age=61.5,40", ENCODING) == ("age", [61.5, 40.0])
    assert conditions.parse_sweep("sex=M,F", ENCODING) == ("sex", ["M", "F"])
    for text, problem in [("age=50:90", "start:stop:count"), ("age=50:90:1", "count"), ("age=50:90:2.5", "count"),
                          ("age=a,b", "continuous"), ("sex=F:M:2", "categorical"), ("sex=F,X", "unknown category"),
                          ("bmi=1:2:3", "unknown covariate"), ("age=50,50", "repeat"), ("age", "name=")]:
        with pytest.raises(ValueError, match=problem):
            conditions.parse_sweep(text, ENCODING)


def test_sweep_varies_only_the_covariate(G):
    ages = [50.0, 70.0, 90.0]
    volumes = gen.sweep(G, [0, 3], "age", ages, {"sex": "M"}, noise_mode="random", batch_size=2)
    assert volumes.shape == (2, 3) + tuple(G.img_shape) + (1,)
    labels = np.stack([labels_of(age=age, sex="M") for age in ages] * 2)
    expected = gen.generate_volumes(G, [0, 0, 0, 3, 3, 3], noise_mode="random", labels=labels)
    np.testing.assert_allclose(volumes.reshape(expected.shape), expected, atol=TOL)
    assert max_diff(volumes[0, 0], volumes[0, 2]) > 1e-3
    with pytest.raises(ValueError, match="swept"):
        gen.sweep(G, [0], "age", ages, "age=60,sex=M")


@pytest.mark.slow
def test_style_mix_and_interpolation_under_a_condition(G):
    old, young = labels_of(age=85, sex="F"), labels_of(age=55, sex="F")
    ends = gen.generate_volumes(G, [3, 8, 3], labels=np.stack([old, young, young]))
    rows, cols, mixed = gen.style_mix(G, [3, 8], [3], range(G.num_ws), labels=old, col_labels=young)
    np.testing.assert_allclose(rows[0], ends[0], atol=TOL)
    np.testing.assert_allclose(cols[0], ends[2], atol=TOL)
    np.testing.assert_allclose(mixed[:, 0], np.repeat(cols, 2, axis=0), atol=TOL)      # all layers from the column
    for space in ("w", "z"):
        frames = gen.interpolate(G, 3, 8, 4, space=space, labels=np.stack([old, young]))   # across conditions
        np.testing.assert_allclose(frames[[0, -1]], ends[:2], atol=TOL)


def test_keras_round_trip_keeps_the_encoding(G, saved):
    loaded = tf3dstylegan.load_network(saved / "cond.keras").G_ema
    assert conditions.label_encoding(loaded) == ENCODING and loaded.config.label_size == 3
    label = labels_of(age=66, sex="M")
    np.testing.assert_allclose(gen.generate_volumes(loaded, [4], labels=label),
                               gen.generate_volumes(G, [4], labels=label), atol=TOL)


@pytest.mark.slow
def test_sweep_command_writes_volumes_grids_and_json(G, saved, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_generate(capsys, "--network", saved / "cond.keras", "--seeds", "0-1", "--sweep",
                             "age=50:90:3", "--cond", "sex=F", "--outdir", out)
    assert code == 0, err
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert names == [f"sweep-seed{s:04d}-age-{a}.nii.gz" for s in (0, 1) for a in (50, 70, 90)]
    expected = gen.sweep(G, [0, 1], "age", [50, 70, 90], {"sex": "F"})
    np.testing.assert_allclose(nib.load(str(out / "sweep-seed0001-age-70.nii.gz")).get_fdata(),
                               to_unit_range(expected[1, 1])[..., 0], atol=1e-5)
    # rows = seeds, columns = values; 4x4x6 volumes are enlarged 24x: axial [Y, X] 96x96, sagittal [Z, Y] 144x96.
    for plane, (height, width) in [("axial", (96, 96)), ("sagittal", (144, 96)), ("coronal", (144, 96))]:
        image = tf.io.decode_png((out / f"sweep_{plane}.png").read_bytes()).numpy()
        assert image.shape == (2 * height + 2, 3 * width + 2 * 2, 1), plane
        assert image[height:height + 2].max() == 0 and image[:height, :width].max() > 0
    assert json.loads((out / "sweep.json").read_text()) == {
        "covariate": "age", "values": [50.0, 70.0, 90.0], "seeds": [0, 1], "condition": {"sex": "F"}}
    code, err = run_generate(capsys, "--network", saved / "cond.keras", "--seeds", "2", "--sweep", "sex=M,F",
                             "--cond", "age=70", "--outdir", tmp_path / "sex")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "sex").glob("*.nii.gz")) == [
        "sweep-seed0002-sex-F.nii.gz", "sweep-seed0002-sex-M.nii.gz"]


@pytest.mark.slow
def test_cond_and_cond_vector_commands(G, saved, tmp_path, capsys):
    code, err = run_generate(capsys, "--network", saved / "cond.keras", "--seeds", "1", "--cond", "sex=M,age=61",
                             "--interp", "1,2", "--frames", "2", "--outdir", tmp_path / "a")
    assert code == 0, err
    expected = gen.generate_volumes(G, [1, 2], labels=labels_of(age=61, sex="M"))
    np.testing.assert_allclose(nib.load(str(tmp_path / "a" / "seed0001.nii.gz")).get_fdata(),
                               to_unit_range(expected[0])[..., 0], atol=1e-5)
    np.testing.assert_allclose(nib.load(str(tmp_path / "a" / "interp-w-0001-0002-001.nii.gz")).get_fdata(),
                               to_unit_range(expected[1])[..., 0], atol=1e-5)
    raw = tf3dstylegan.load_network(saved / "raw.keras").G_ema
    code, err = run_generate(capsys, "--network", saved / "raw.keras", "--seeds", "0", "--cond_vector", "0.5,1,0",
                             "--outdir", tmp_path / "b")
    assert code == 0, err
    np.testing.assert_allclose(nib.load(str(tmp_path / "b" / "seed0000.nii.gz")).get_fdata(),
                               to_unit_range(gen.generate_volumes(raw, [0], labels=[0.5, 1, 0])[0])[..., 0], atol=1e-5)


BAD = [  # (network, flags, the one-line error's flag and problem)
    ("uncond", ["--seeds", "0", "--cond", "age=70,sex=F"], "--cond: this network is unconditional"),
    ("uncond", ["--seeds", "0", "--sweep", "age=50:90:3"], "--sweep: this network is unconditional"),
    ("cond", ["--seeds", "0"], "--cond: this network is conditional on age, sex (label_size 3): give "
                                     "--cond age=<number>,sex=<F|M>"),
    ("cond", ["--seeds", "0", "--cond", "age=70"], "--cond: missing covariate 'sex'"),
    ("cond", ["--seeds", "0", "--cond", "age=70,sex=F,bmi=2"], "--cond: unknown covariate 'bmi'"),
    ("cond", ["--seeds", "0", "--cond", "age=70,sex=X"], "--cond: unknown category 'X'"),
    ("cond", ["--seeds", "0", "--cond", "age=old,sex=F"], "--cond: covariate 'age' needs a finite number"),
    ("cond", ["--seeds", "0", "--cond", "age"], "--cond: expected name=value"),
    ("cond", ["--seeds", "0", "--cond", "sex=F", "--cond_vector", "1,0,1"], "--cond_vector: give --cond or"),
    ("cond", ["--seeds", "0", "--cond_vector", "1,0"], "--cond_vector: 2 label values given"),
    ("raw", ["--seeds", "0", "--cond", "age=70"], "--cond: this network is conditional (label_size 3, covariates"),
    ("raw", ["--seeds", "0", "--sweep", "age=50:90:3"], "--sweep: this network is conditional (label_size 3, "
                                                      "covariates not named): a sweep needs covariate names"),
    ("cond", ["--seeds", "0", "--sweep", "bmi=1:2:3"], "--sweep: unknown covariate 'bmi'"),
    ("cond", ["--seeds", "0", "--sweep", "sex=F,X"], "--sweep: unknown category 'X'"),
    ("cond", ["--seeds", "0", "--sweep", "age=50:90:3"], "--cond: missing covariate 'sex'"),
    ("cond", ["--seeds", "0", "--sweep", "age=50:90:3", "--cond", "age=60,sex=F"], "--cond: covariate 'age' is swept"),
    ("cond", ["--interp", "0,1", "--sweep", "age=50:90:3"], "--sweep: needs --seeds"),
]


@pytest.mark.parametrize("network, flags, problem", BAD, ids=[b[2].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_conditions_are_one_line_errors_and_write_nothing(saved, tmp_path, capsys, network, flags, problem):
    code, err = run_generate(capsys, "--network", saved / f"{network}.keras", *flags, "--outdir", tmp_path / "out")
    assert code == 2 and len(err) == 1 and err[0].startswith(f"generate.py: error: {problem}"), err
    assert not (tmp_path / "out").exists()


def test_projection_under_a_condition(G, saved, tmp_path, capsys):
    old, young = labels_of(age=85, sex="F"), labels_of(age=55, sex="F")
    w_old, w_young = (projector.w_statistics(G, 200, labels=label)[0] for label in (old, young))
    expected = G.mapping(np.random.RandomState(123).randn(200, G.latent_size), np.tile(old, [200, 1]))[:, 0]
    np.testing.assert_allclose(w_old, np.mean(expected, axis=0), rtol=1e-4, atol=1e-6)
    assert max_diff(w_old, w_young) > 1e-3
    target = np.zeros(G.img_shape, np.float32)
    with pytest.raises(ValueError, match="conditional"):
        projector.project(G, target, num_steps=1, w_avg_samples=50)
    start = projector.project(G, target, num_steps=0, w_avg_samples=200, labels=young)  # w starts at w_young
    np.testing.assert_allclose(start.w[0], np.tile(w_young, [G.num_ws, 1]), atol=1e-6)
    np.testing.assert_array_equal(start.labels, young)
    (tmp_path / "scan.nii.gz").write_bytes(b"the condition is checked before the scan is read")
    code, err = run_command("project", capsys, *project_argv(saved, tmp_path), "--cond", "age=85")
    assert code == 2 and err == ["project.py: error: --cond: missing covariate 'sex' (expected age, sex)"], err
    assert not (tmp_path / "p").exists()


def project_argv(saved, tmp_path):
    """project.py's flags for the conditional network, the scan tmp_path/scan.nii.gz and output tmp_path/p."""
    return ["project.py", "--network", saved / "cond.keras", "--target", tmp_path / "scan.nii.gz", "--steps", "2",
            "--outdir", tmp_path / "p"]


@pytest.mark.slow
def test_project_command_under_a_condition(G, saved, tmp_path, capsys):
    old = labels_of(age=85, sex="F")
    target = gen.generate_volumes(G, [6], labels=old)[0]
    save_volume(tmp_path / "scan.nii.gz", to_unit_range(target)[..., 0], G.config.voxel_size)
    code, err = run_command("project", capsys, *project_argv(saved, tmp_path), "--cond", "age=85,sex=F")
    assert code == 0, err
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert report["condition"] == "age=85,sex=F" and np.allclose(report["labels"], old)
    with np.load(tmp_path / "p" / "projected_w.npz") as npz:
        np.testing.assert_array_equal(npz["labels"], old)
