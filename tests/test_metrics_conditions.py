"""Per-condition metrics and the covariate effect check: grouping of labels into categories and bins, the
slope with its confidence interval, per-group metrics and effects on labelled records with a stand-in
conditional generator, and the metrics command's --by / --effect on a tiny Keras conditional generator."""
import json
import types

import numpy as np
import pytest
from scipy import stats

from tf3dstylegan import cli
from tf3dstylegan.data import anatomy
from tf3dstylegan.data.labels import LabelEncoding, write_labels
from tf3dstylegan.data.records import RecordWriter
from tf3dstylegan.metrics import effects, groups, mmd, per_condition

SHAPE = (16, 16, 16)
VOXEL_SIZE = 8.0  # mm: the ventricle measure's ellipsoid holds about 220 voxels of a 16³ grid
ML_PER_VOXEL = VOXEL_SIZE ** 3 / 1000.0
NAMES, KINDS, DECLARED = ("age", "sex"), ("continuous", "categorical"), {"sex": ("F", "M")}
ROWS = [{"age": a, "sex": s} for a, s in [(52, "F"), (60, "F"), (61.5, "M"), (66, "F"), (70, "F"), (71, "M"),
                                          (75, "F"), (79, "F"), (83, "M"), (86, "F"), (89, "M"), (90, "F")]]
DATA_ENCODING = LabelEncoding.fit(NAMES, KINDS, ROWS, DECLARED)
# The generator's encoding comes from other (training) data: other means and standard deviations.
G_ENCODING = LabelEncoding.fit(NAMES, KINDS, [{"age": a, "sex": "F"} for a in (40, 58, 95)], DECLARED)


def dark_voxel_order():
    """Flat indices of the measure's ellipsoid, centre first: the first k are a 'ventricle' of k voxels."""
    mask = anatomy.measure_mask(SHAPE, VOXEL_SIZE)
    grid = np.stack(np.meshgrid(*[np.arange(n) - n / 2 for n in SHAPE], indexing="ij"), -1)
    inside = np.flatnonzero(mask)
    return inside[np.argsort(np.linalg.norm(grid.reshape(-1, 3)[inside], axis=1), kind="stable")]


ORDER = dark_voxel_order()


def render(dark_counts):
    """[N] dark voxel counts -> [N, X, Y, Z] volumes in [0, 1]: bright tissue, a dark region of that size."""
    volumes = np.full((len(dark_counts), int(np.prod(SHAPE))), 0.8, np.float32)
    for volume, count in zip(volumes, dark_counts):
        volume[ORDER[:int(count)]] = 0.1
    return volumes.reshape((-1,) + SHAPE)


def ventricle_voxels(age):
    """The synthetic 'anatomy': one more dark voxel per year from 10 voxels at 50."""
    return 10.0 + (np.asarray(age, np.float64) - 50.0)


class StandInConditionalG:
    """A conditional 'generator' with G's interface: volumes whose dark region follows the requested age
    (decoded with its own encoding), shifted by the latent; records the labels it is given."""

    latent_size = 4

    def __init__(self):
        self.config = types.SimpleNamespace(label_size=3, label_encoding=json.dumps(G_ENCODING.to_json()),
                                            voxel_size=VOXEL_SIZE)
        self.calls = []

    def __call__(self, z, truncation_psi=1.0, noise_mode="const", labels=None):
        self.calls.append(np.array(labels))
        ages = [G_ENCODING.decode(row)["age"] for row in labels]
        counts = np.round(ventricle_voxels(ages) + 3.0 * np.clip(z[:, 0], -2, 2))
        bright = np.array([0.0 if G_ENCODING.decode(row)["sex"] == "F" else -0.2 for row in labels])
        return (render(counts) * 2.0 - 1.0 + bright[:, None, None, None])[..., None].astype(np.float32)


class StubExtractors:
    def deepbet(self, volumes):
        flat = volumes.reshape(len(volumes), -1)
        return np.stack([flat.mean(1), flat.std(1), (flat < -0.5).mean(1)], 1)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """12 labelled 16³ records (8 F, 4 M), dark region = ventricle_voxels(age) + noise, M darker."""
    folder = tmp_path_factory.mktemp("labelled") / "recs"
    noise = np.random.default_rng(0).normal(0.0, 2.0, len(ROWS))
    volumes = render(np.round(ventricle_voxels([r["age"] for r in ROWS]) + noise))
    volumes -= np.array([0.0 if r["sex"] == "F" else 0.1 for r in ROWS], np.float32)[:, None, None, None]
    with RecordWriter(folder, 4) as writer:
        for volume in volumes:
            writer.write(volume)
    write_labels(folder, DATA_ENCODING.samples, DATA_ENCODING)
    return folder


def test_grouping_into_categories_and_bins():
    labels = DATA_ENCODING.samples  # float32, standardised ages: 60 and 70 must stay in the bins they name
    sex = groups.parse_grouping("sex")
    assert groups.group_names(sex, DATA_ENCODING) == ["sex=F", "sex=M"]
    assert groups.assign_groups(labels, sex, DATA_ENCODING).tolist() == [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0]
    age = groups.parse_grouping("age:60,70,80,90")
    assert groups.group_names(age, DATA_ENCODING) == ["age=[60,70)", "age=[70,80)", "age=[80,90]"]
    # 52 is outside; 60 -> first bin, 70 -> second, 90 (the top edge) -> the last, closed bin.
    assert groups.assign_groups(labels, age, DATA_ENCODING).tolist() == [-1, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert groups.group_sample_count(8, 1000, True) == 4 and groups.group_sample_count(8, 3, False) == 3


@pytest.mark.parametrize("text,message", [
    ("height", "unknown covariate 'height' (covariates: age, sex)"),
    ("age", "covariate 'age' is continuous: give bin edges"),
    ("sex:1,2", "covariate 'sex' is categorical (F, M)"),
])
def test_grouping_checked_against_the_encoding(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        groups.check_grouping(groups.parse_grouping(text), DATA_ENCODING)


@pytest.mark.parametrize("text", ["age:60", "age:70,60", "age:50,x", ":50,60", "age:50,nan"])
def test_bad_grouping_forms(text):
    with pytest.raises(ValueError):
        groups.parse_grouping(text)


def test_slope_interval_matches_linregress_and_fixed_effects():
    rng = np.random.default_rng(1)
    x = rng.uniform(50, 90, 40)
    y = 3.0 + 0.2 * x + rng.normal(0, 1.0, 40)
    fit, reference = effects.slope_interval(x, y), stats.linregress(x, y)
    assert fit["slope"] == pytest.approx(reference.slope) and fit["stderr"] == pytest.approx(reference.stderr)
    half = stats.t.ppf(0.975, 38) * reference.stderr
    assert (fit["lo"], fit["hi"]) == pytest.approx((reference.slope - half, reference.slope + half))
    # Ten subjects at five ages each, intercepts far apart: the within-subject slope is exact and narrow.
    ages = np.tile(np.linspace(50, 90, 5), 10)
    subject = np.repeat(np.arange(10), 5)
    y = 100.0 * rng.normal(size=10)[subject] + 0.2 * ages + rng.normal(0, 0.1, 50)
    within, pooled = effects.slope_interval(ages, y, subject), effects.slope_interval(ages, y)
    assert within["lo"] < 0.2 < within["hi"] and within["hi"] - within["lo"] < 0.05
    assert within["slope"] == pytest.approx(pooled["slope"])  # balanced design: the same slope
    assert pooled["hi"] - pooled["lo"] > 10 * (within["hi"] - within["lo"])
    with pytest.raises(ValueError, match="distinct covariate values"):
        effects.slope_interval(np.full(6, 70.0), y[:6])


def test_slope_of_synthetic_ventricles_recovers_the_known_slope():
    rng = np.random.default_rng(2)
    ages = rng.uniform(50, 90, 30)
    counts = np.round(ventricle_voxels(ages) + rng.normal(0, 3.0, 30))
    measured = effects.measure_volumes(render(counts)[..., None] * 2.0 - 1.0, VOXEL_SIZE)
    np.testing.assert_allclose(measured, counts * ML_PER_VOXEL)  # the measure counts the dark voxels
    partial = effects.measure_volumes(render(counts)[..., None] * 2.0 - 1.0, VOXEL_SIZE, "partial_ventricle_volume")
    np.testing.assert_allclose(partial, counts * ML_PER_VOXEL, rtol=1e-5)  # darker than CSF: each counts once
    fit = effects.slope_interval(ages, measured)
    assert fit["lo"] < ML_PER_VOXEL < fit["hi"] and fit["slope"] == pytest.approx(ML_PER_VOXEL, rel=0.15)
    shrinking = effects.measure_volumes(render(120.0 - counts)[..., None] * 2.0 - 1.0, VOXEL_SIZE)
    fit = effects.slope_interval(ages, shrinking)
    assert fit["lo"] < -ML_PER_VOXEL < fit["hi"] < 0


def test_per_group_metrics_and_effect(records):
    G = StandInConditionalG()
    res = per_condition.compute_metrics(G, str(records), metrics=["bmmd2", "msssim", "pr3d"], num=6, batch_size=2,
                                 extractors=StubExtractors(), by="sex", effect="age", effect_steps=5)
    female, male = res["by"]["sex=F"], res["by"]["sex=M"]
    assert list(res["by"]) == ["sex=F", "sex=M"] and (female["count"], male["count"]) == (8, 4)
    assert (female["num"], male["num"], res["num"]) == (4, 2, 6)
    assert "precision3d" in female and "skipped" not in female
    assert male["skipped"] == {"pr3d": 4} and "precision3d" not in male and np.isfinite(male["bmmd2"])
    # Calls (batches of 2): overall 3, overall effect 2 latents x 5 ages (5), F metrics 2, F effect 5,
    # M metrics 1, M effect 5.
    decoded = [[G_ENCODING.decode(row) for row in call] for call in G.calls]
    assert len(decoded) == 21
    overall_sexes = {d["sex"] for call in decoded[:3] for d in call}
    f_metrics, m_metrics = decoded[8:10], decoded[15:16]
    assert overall_sexes == {"F", "M"}
    assert all(d["sex"] == "F" for call in f_metrics for d in call)
    assert all(d["sex"] == "M" for call in m_metrics for d in call)
    # The real row of group M reads M's volumes only: halves A and B of its four records, in order.
    from tf3dstylegan.data.records import read_volumes
    real = np.stack(list(read_volumes(records)))
    m_volumes = real[[i for i, r in enumerate(ROWS) if r["sex"] == "M"]]
    assert male["real_bmmd2"] == pytest.approx(mmd.batch_mmd2(m_volumes[:2], m_volumes[2:]))
    # Effect: the generator's ages (decoded with its own encoding) are 5 values over the real range.
    effect = res["effect"]
    requested = [d["age"] for call in decoded[3:8] for d in call]
    np.testing.assert_allclose(requested[:5], np.linspace(52, 90, 5), atol=1e-4)
    assert effect["latents"] == 2 and effect["slope_n"] == 10 and effect["real_slope_n"] == 12
    for prefix in ("", "real_"):
        assert effect[f"{prefix}slope_lo"] < ML_PER_VOXEL < effect[f"{prefix}slope_hi"], (prefix, effect)
    assert effect["slope"] == pytest.approx(ML_PER_VOXEL, rel=0.1)
    assert female["effect"]["real_slope_n"] == 8 and male["effect"]["real_slope_n"] == 4
    assert female["effect"]["slope"] == pytest.approx(ML_PER_VOXEL, rel=0.1)


def test_bins_too_small_are_skipped(records):
    G = StandInConditionalG()
    res = per_condition.compute_metrics(G, str(records), metrics=["bmmd2", "pr3d"], num=6, batch_size=2,
                                 extractors=StubExtractors(), by="age:50,55,90", effect="age")
    small, large = res["by"]["age=[50,55)"], res["by"]["age=[55,90]"]
    assert small["count"] == 1 and small["skipped"] == {"bmmd2": 2, "pr3d": 4} and small["num"] == 0
    assert "1 real volumes, the effect needs 3" in small["effect"]["skipped"]
    assert large["count"] == 11 and large["num"] == 5 and "precision3d" in large


def test_real_rows_per_group_and_the_effect_alone(records):
    reference_only = per_condition.compute_metrics(None, str(records), metrics=["bmmd2"], num=2, batch_size=2, by="sex")
    assert "bmmd2" not in reference_only["by"]["sex=M"] and np.isfinite(reference_only["by"]["sex=M"]["real_bmmd2"])
    effect_only = per_condition.compute_metrics(StandInConditionalG(), str(records), metrics=(), num=4, effect="age")
    assert set(effect_only) == {"effect"} and effect_only["effect"]["slope_n"] == 5  # 1 latent x 5 ages


def run(argv, capsys):
    """(exit code, stdout, stderr lines) of the metrics command run in this process."""
    try:
        code = cli.run("tf3dstylegan.commands.metrics", ["metrics"] + [str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Tiny 16³ Keras generators: conditional on age and sex (G's encoding), and unconditional."""
    import keras
    from tf3dstylegan.config import load_config
    from tf3dstylegan.networks import build_generator
    folder = tmp_path_factory.mktemp("networks")
    tiny = dict(base_size=[2, 2, 2], resolution_log2=5, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
                mapping_fmaps=8, mapping_layers=2, voxel_size=VOXEL_SIZE)
    for name, conditional in (("cond", dict(label_size=3, label_encoding=json.dumps(G_ENCODING.to_json()))),
                              ("uncond", {})):
        keras.utils.set_random_seed(0)
        build_generator(load_config("2mm-fd16", **tiny, **conditional)).save(folder / f"{name}.keras")
    return folder


@pytest.mark.parametrize("argv,message", [
    (["--by", "age:70,60"], "--by: bin edges of 'age' must be at least 2 increasing finite numbers"),
    (["--by", "height"], "--by: unknown covariate 'height' (covariates: age, sex)"),
    (["--by", "age"], "--by: covariate 'age' is continuous: give bin edges"),
    (["--effect", "sex"], "--effect: covariate 'sex' is categorical; the effect needs a continuous one (age)"),
    (["--effect", "age:brain_volume"],
     "--effect: unknown measure 'brain_volume' (measures: ventricle_volume, partial_ventricle_volume)"),
    (["--effect", "age", "--effect_steps", "1"],
     "--effect_steps: must be in [2, 1000] (covariate values per latent), got 1"),
    (["--by", "sex", "--network", "uncond"], "--by: the network is unconditional (label_size 0)"),
    (["--effect", "age", "--network", "uncond"], "--effect: the network is unconditional (label_size 0)"),
])
def test_bad_condition_flags(argv, message, networks, records, capsys):
    network = ["--network", networks / "cond.keras"] if "--network" not in argv else []
    argv = [networks / f"{a}.keras" if a == "uncond" else a for a in argv]
    code, _, err = run(["--data", records, "--metrics", "bmmd2", "--num", "2"] + network + argv, capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_effect_needs_a_network(records, capsys):
    code, _, err = run(["--data", records, "--effect", "age"], capsys)
    assert code == 2 and len(err) == 1 and "--effect: needs --network (a conditional generator)" in err[0]


def test_conditional_network_needs_labelled_data(networks, tmp_path, capsys):
    folder = tmp_path / "unlabelled"
    with RecordWriter(folder, 4) as writer:
        for volume in render([10, 20, 30, 40]):
            writer.write(volume)
    code, _, err = run(["--network", networks / "cond.keras", "--data", folder, "--metrics", "bmmd2", "--num", "2"],
                       capsys)
    assert code == 2 and len(err) == 1 and f"{folder}: has no labels" in err[0], err


@pytest.mark.slow
def test_command_by_sex_with_effect(networks, records, tmp_path, capsys):
    out = tmp_path / "m.json"
    code, stdout, err = run(["--network", networks / "cond.keras", "--data", records, "--metrics", "bmmd2,msssim",
                             "--num", "4", "--batch_size", "2", "--intervals", "0", "--by", "sex", "--effect", "age",
                             "--effect_steps", "3", "--out", out], capsys)
    assert code == 0, err
    values = json.loads(out.read_text())
    assert list(values["by"]) == ["sex=F", "sex=M"] and values["by"]["sex=M"]["num"] == 2
    assert np.isfinite(values["bmmd2"]) and np.isfinite(values["by"]["sex=F"]["real_msssim"])
    effect = values["effect"]
    assert effect["covariate"] == "age" and effect["steps"] == 3 and effect["slope_n"] == 6
    assert effect["slope_lo"] <= effect["slope"] <= effect["slope_hi"]
    assert effect["real_slope_lo"] < ML_PER_VOXEL < effect["real_slope_hi"]
    assert "by sex=F: 8 real volumes" in stdout and "by sex=M: 4 real volumes" in stdout
    assert "covariate effect: ventricle_volume against age" in stdout and "95% CI (t)" in stdout
