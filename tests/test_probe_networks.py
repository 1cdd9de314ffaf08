"""Probe 2026-12-01, network files: original pickles with bad static_kwargs or weights (R10, R15, R28-R34), a
conditional pickle converted (N1), `.keras` files with dtype-policy tricks or an outside config (R41, R42, R44),
and --resume with a network that does not fit (N38, N114). Each is one line naming the file."""
import json
import zipfile

import numpy as np
import pytest

from legacy_writer import PickledNetwork, make_states, network_state, write_pickle
from tf3dstylegan import cli
from tf3dstylegan.legacy import LegacyFormatError
from tf3dstylegan.loading import load_network

TINY = dict(base=(2, 2, 2), res=3)


def pickle_with(tmp_path, edit=None, name="net.pkl", **kwargs):
    """A tiny original-layout pickle; edit(states) changes its states before writing."""
    states = make_states(np.random.default_rng(0), **TINY, **kwargs)
    if edit is not None:
        edit(states)
    write_pickle(tmp_path / name, states)
    return tmp_path / name


def set_kwarg(key, value, which="g_kwargs"):
    def edit(states):
        states[which][key] = value
    return edit


def set_weight(value):
    def edit(states):
        states["mapping"]["Dense0/weight"] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (set_kwarg("latent_size", None), r"G static_kwargs latent_size=None is not an integer"),  # R30
    (set_kwarg("resolution", "abc"), r"G static_kwargs resolution='abc' is not a number"),  # R29
    (set_kwarg("resolution", float("nan")), r"G static_kwargs resolution=nan is not a number"),  # R34
    (set_kwarg("base_size", [0, 0, 0]), r"G static_kwargs base_size=\[0, 0, 0\] must be 3 positive integers"),  # R33
    (set_kwarg("fmap_max", 65536), r"G and D disagree on fmap_max"),
    (lambda s: (set_kwarg("fmap_max", 65536)(s), set_kwarg("fmap_max", 65536, "d_kwargs")(s)),
     r"config field fmap_max: must be in \[1, 4096\], got 65536"),  # R28: now with the file
    (set_kwarg("resample_kernel", [[[[1]]]] * 3), r"G resample_kernel=\[\[\[\[1\]\]\], .*is not supported"),
    (set_weight(np.array(["abc"] * 64, dtype=object)), r"mapping:Dense0/weight holds array\(\['abc'"),  # R10
    (set_weight("not a weight"), r"mapping:Dense0/weight holds 'not a weight', not numbers"),  # R31
])
def test_bad_pickles_are_one_line_naming_the_file(tmp_path, edit, message):
    path = pickle_with(tmp_path, edit)
    with pytest.raises(LegacyFormatError, match=rf"^{path}: .*{message}") as err:
        load_network(path)
    assert "\n" not in str(err.value)


def test_a_deeply_nested_kwarg_is_named_without_recursing(tmp_path):
    """R15: a 200,000-deep list in resample_kernel ended in 'maximum recursion depth exceeded' (no file)."""
    states = make_states(np.random.default_rng(0), **TINY)
    states["g_kwargs"]["resample_kernel"] = "DEEPMARKER"
    write_pickle(tmp_path / "plain.pkl", states, protocol=2)
    placeholder = b"X\x0a\x00\x00\x00DEEPMARKER"  # protocol 2 BINUNICODE; the deep list is built by the unpickler
    deep = b"(" * 200_000 + b"]" + b"l" * 200_000  # MARK ... EMPTY_LIST LIST ...: no recursion needed to read
    data = (tmp_path / "plain.pkl").read_bytes()
    assert placeholder in data
    path = tmp_path / "deep.pkl"
    path.write_bytes(data.replace(placeholder, deep))
    with pytest.raises(LegacyFormatError, match=rf"^{path}: G resample_kernel=\[+\.\.\.\]+ is not supported"):
        load_network(path)


def test_components_that_are_not_networks_are_named(tmp_path):
    """R32: components as ints were an AttributeError traceback."""
    states = make_states(np.random.default_rng(0), **TINY)
    G = PickledNetwork(network_state("G", "G_main", dict(states["g_kwargs"]), states["G"],
                                     {"synthesis": 1, "mapping": 2}))
    D = PickledNetwork(network_state("D", "D_stylegan2_3d_curated_real", dict(states["d_kwargs"]), states["D"]))
    import pickle
    (tmp_path / "ints.pkl").write_bytes(pickle.dumps((G, D, G)))
    with pytest.raises(LegacyFormatError, match=r"ints.pkl: a network component is a int, not a Network state"):
        load_network(tmp_path / "ints.pkl")


@pytest.mark.slow
def test_a_conditional_pickle_converts_with_the_default_labels(tmp_path, capsys):
    """N1: convert crashed in its report (G_ema without labels) and left a half-written folder."""
    path = pickle_with(tmp_path, label_size=3)
    code = cli.run("tf3dstylegan.commands.convert", ["convert", str(path), str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    assert report["seed0_volume"]["labels"] == [1.0, 0.0, 0.0] and np.isfinite(report["seed0_volume"]["D_score"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["D.keras", "G.keras", "G_ema.keras",
                                                                    "conversion_report.json"]
    with pytest.raises(SystemExit) as stop:  # an existing folder with files is not mixed into
        cli.run("tf3dstylegan.commands.convert", ["convert", str(path), str(tmp_path / "out")])
    assert stop.value.code == 2 and "already holds files" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary folder left


def test_a_failed_convert_leaves_no_folder(tmp_path, monkeypatch):
    """The folder appears whole or not at all: a failure while saving leaves neither it nor its temporary."""
    import keras
    from tf3dstylegan.convert import convert
    path = pickle_with(tmp_path)

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        convert(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pkl"]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    import tf3dstylegan
    root = tmp_path_factory.mktemp("keras")
    G, _ = tf3dstylegan.build_networks("2mm-fd16", base_size=[2, 2, 2], resolution_log2=3, fmap_min=4, fmap_max=4,
                                       latent_size=8, dlatent_size=8, mapping_fmaps=8, mapping_layers=2)
    G.save(root / "G.keras")
    return root / "G.keras"


def edited_keras(source, target, edit):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                description = json.loads(data)
                edit(description["config"])
                data = json.dumps(description).encode()
            dst.writestr(item, data)
    return target


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(dtype={"module": "builtins", "class_name": "exec", "config": {"name": "1"},
                               "registered_name": None}), "not a loadable .keras model"),  # R41
    (lambda c: c.update(dtype="keras.config.enable_unsafe_deserialization"), "not a loadable .keras model"),  # R42
    (lambda c: c.update(config="outside.json"), "its model config is a str, not the config itself"),  # R44
])
def test_keras_tricks_are_refused_naming_the_file(tmp_path, keras_file, edit, message):
    (tmp_path / "outside.json").write_text(json.dumps({"base_size": [2, 2, 2], "resolution_log2": 3}))
    path = edited_keras(keras_file, tmp_path / "trick.keras", edit)
    with pytest.raises(ValueError, match=rf"^{path}: .*{message}") as err:
        load_network(path)
    assert "\n" not in str(err.value)
    from keras.src.saving import serialization_lib
    assert serialization_lib.in_safe_mode() is not False  # nothing in the file switched safe mode off


def test_resume_with_a_network_that_does_not_fit_names_the_fields(tmp_path, keras_file):
    """N38: a mapping depth that differs listed no variables; N114: a conditional snapshot on unlabelled records
    did not say it was conditional."""
    from tf3dstylegan import load_config
    from tf3dstylegan.training.job import check_network_file
    cfg = load_config("2mm-fd16", base_size=[2, 2, 2], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8,
                      dlatent_size=8, mapping_fmaps=8, mapping_layers=2, name="tiny")
    check_network_file(keras_file, cfg)  # fits
    with pytest.raises(ValueError, match=r"G.keras: its networks do not fit config 'tiny': mapping_layers 2 \(config "
                                         r"'tiny': 8\) \(pass the matching --cfg or --override\)"):
        check_network_file(keras_file, cfg.replace(mapping_layers=8))
    conditional = edited_keras(keras_file, tmp_path / "cond.keras", lambda c: c["config"].update(label_size=3))
    with pytest.raises(ValueError, match=r"label_size 3 \(config 'tiny': 0\) \(a conditional network: train it on "
                                         r"records with labels\)"):
        check_network_file(conditional, cfg)
    pkl = pickle_with(tmp_path, mapping_fmaps=8)
    with pytest.raises(ValueError, match=r"net.pkl: its networks do not fit config 'tiny': mapping_layers 8"):
        check_network_file(pkl, cfg)
