"""Bad input to every model-side command ends in one line `PROG: error: ...` naming the flag or file, exit 2,
and nothing written: a table of (command, arguments, expected words). Commands run in-process through
`tf3dstylegan.cli.run`, as the console scripts do."""
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from legacy_writer import make_states, write_pickle
from tf3dstylegan import cli

REPO = Path(__file__).resolve().parent.parent
MODULES = {"train": "tf3dstylegan.commands.train", "generate": "tf3dstylegan.commands.generate",
           "project": "tf3dstylegan.commands.project", "convert": "tf3dstylegan.commands.convert",
           "metrics": "tf3dstylegan.commands.metrics"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny generator (.keras), a legacy pickle, a scan, and crafted bad files."""
    import tensorflow as tf  # noqa: F401
    import tf3dstylegan
    from tf3dstylegan.data.nifti import save_volume
    root = tmp_path_factory.mktemp("files")
    G, _ = tf3dstylegan.build_networks("2mm-fd16", base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4,
                                       latent_size=8, dlatent_size=8, mapping_fmaps=8, mapping_layers=2)
    G.save(root / "G.keras")
    write_pickle(root / "net.pkl", make_states(np.random.default_rng(0), base=(2, 2, 3), res=3))
    save_volume(root / "scan.nii.gz", np.zeros((8, 8, 12), np.float32), 2.0)
    (root / "file.txt").write_text("not a folder")
    (root / "notzip.keras").write_bytes(b"this is not a zip archive")
    (root / "garbage.pkl").write_bytes(b"\x80\x05garbage")
    (root / "list.json").write_text("[1, 2]")
    with zipfile.ZipFile(root / "G.keras") as src, zipfile.ZipFile(root / "huge.keras", "w") as dst:
        for item in src.infolist():  # the same small weights, a config that claims 640x768x896 volumes
            data = src.read(item.filename)
            if item.filename == "config.json":
                description = json.loads(data)
                description["config"]["config"].update(resolution_log2=9, base_size=[5, 6, 7], fmap_max=512)
                data = json.dumps(description).encode()
            dst.writestr(item, data)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'pwned'}",))
    (root / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    nan_states = make_states(np.random.default_rng(1), base=(2, 2, 3), res=3)
    key = next(k for k in nan_states["synthesis"] if k.endswith("weight"))
    nan_states["synthesis"][key] = np.full_like(nan_states["synthesis"][key], np.nan)
    write_pickle(root / "nan.pkl", nan_states)
    return root


def run_command(command, args):
    """The exit code of `cli.run` on the command's module (a SystemExit's code included)."""
    try:
        code = cli.run(MODULES[command], [f"{command}.py", *args])
    except SystemExit as stop:
        code = stop.code
    return code


CASES = [
    # train: flags checked before any work
    ("train", ["--kimg", "0"], "--kimg: must be a positive finite number"),
    ("train", ["--kimg", "-1"], "--kimg: must be a positive finite number"),
    ("train", ["--kimg", "inf"], "--kimg: must be a positive finite number"),
    ("train", ["--kimg", "nan"], "--kimg: must be a positive finite number"),
    ("train", ["--batch", "0"], "--batch: must be an integer >= 1"),
    ("train", ["--snap", "0"], "--snap: must be an integer >= 1"),
    ("train", ["--keep_checkpoints", "0"], "--keep_checkpoints: must be an integer >= 1"),
    ("train", ["--seed", "-1"], "--seed: must be an integer in"),
    ("train", ["--precision", "float8"], "flag --precision=float8"),
    ("train", ["--strategy", "horovod"], "flag --strategy=horovod"),
    ("train", ["--kimg", "abc"], "flag --kimg=abc"),
    ("train", ["--override", "batch_size"], "--override: --override 'batch_size': must look like key=value"),
    ("train", ["--override", "fmaps=3"], "--override: unknown config fields ['fmaps']"),
    ("train", ["--override", "batch_size=abc"], "config field batch_size: expected an integer, got 'abc'"),
    ("train", ["--override", "base_size=5"], "config field base_size: expected a list of 3 integers"),
    ("train", ["--override", "fmap_max=0"], "config field fmap_max: must be in [1, 4096]"),
    ("train", ["--override", "resolution_log2=4.5"], "config field resolution_log2: expected an integer"),
    ("train", ["--override", "resolution_log2=12"], "config field resolution_log2: must be in [2, 10]"),
    ("train", ["--override", "name=../../escape"], "config field name: must be a plain name"),
    ("train", ["--override", "g_lr=nan"], "config field g_lr: expected a finite number"),
    ("train", ["--override", 'd_loss="wgan"'], "config field d_loss: must be one of"),
    ("train", ["--cfg", "nope"], "--cfg: unknown config 'nope'"),
    ("train", ["--cfg", "{root}/missing.json"], "--cfg: {root}/missing.json: no such config file"),
    ("train", ["--cfg", "{root}/list.json"], "a config file must hold a JSON object"),
    ("train", ["--metrics", "bogus"], "--metrics: unknown metrics ['bogus']"),
    ("train", ["--metrics", "bmmd2", "--metrics_num", "1"], "--metrics_num: must be >= 2"),
    ("train", ["positional"], "unexpected arguments: positional"),
    ("train", ["--no_such_flag"], "Unknown command line flag 'no_such_flag'"),
    # generate
    ("generate", ["--outdir", "{out}", "--seeds", "0"], "--network: required"),
    ("generate", ["--network", "{root}/G.keras", "--seeds", "0"], "--outdir: required"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}"], "nothing to do"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--row_seeds", "1"], "--col_seeds: style mixing"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "0", "--trunc", "nan"],
     "--trunc: must be a finite number"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "0", "--trunc", "inf"],
     "--trunc: must be a finite number"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "0", "--trunc_cutoff", "-3"],
     "--trunc_cutoff: must be >= 0"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "0", "--trunc_cutoff", "99"],
     "--trunc_cutoff: this network has 4 style layers"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "a"], "--seeds: expected integers"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "3-1"], "--seeds: empty range"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "4294967296"],
     "--seeds: 4294967296 is too large"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--interp", "1"], "--interp: expected two seeds"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--interp", "1,2", "--frames", "1"],
     "--frames: need at least 2 frames"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--row_seeds", "1", "--col_seeds", "2",
                  "--col_styles", "x"], "--col_styles: expected integers"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--row_seeds", "1", "--col_seeds", "2",
                  "--col_styles", "7"], "--col_styles: style layers [7] out of range"),
    ("generate", ["--network", "{root}/missing.keras", "--outdir", "{out}", "--seeds", "0"],
     "{root}/missing.keras: no such file or folder"),
    ("generate", ["--network", "{root}/notzip.keras", "--outdir", "{out}", "--seeds", "0"],
     "{root}/notzip.keras: not a .keras file (not a zip archive)"),
    ("generate", ["--network", "{root}/garbage.pkl", "--outdir", "{out}", "--seeds", "0"],
     "{root}/garbage.pkl: not a readable 3D-StyleGAN pickle"),
    ("generate", ["--network", "{root}/evil.pkl", "--outdir", "{out}", "--seeds", "0"],
     "refusing to load posix.system"),
    ("generate", ["--network", "{root}/huge.keras", "--outdir", "{out}", "--seeds", "0"],
     "{root}/huge.keras: claims a (640, 768, 896) generator"),
    ("generate", ["--network", "{root}", "--outdir", "{out}", "--seeds", "0"], "not a training run folder"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{root}/file.txt", "--seeds", "0"],
     "--outdir: {root}/file.txt exists and is not a folder"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{root}", "--seeds", "0"],
     "--outdir: {root} already holds files; give --overwrite"),
    ("generate", ["--network", "{root}/G.keras", "--outdir", "{out}", "--seeds", "0", "--batch_size", "0"],
     "flag --batch_size=0"),
    # project
    ("project", ["--network", "{root}/G.keras", "--outdir", "{out}"], "--target: required"),
    ("project", ["--network", "{root}/G.keras", "--target", "{root}/scan.nii.gz", "--outdir", "{out}", "--steps", "0"],
     "--steps: must be >= 1"),
    ("project", ["--network", "{root}/G.keras", "--target", "{root}/nope.nii.gz", "--outdir", "{out}"],
     "--target: {root}/nope.nii.gz: no such file"),
    ("project", ["--network", "{root}/G.keras", "--target", "{root}/scan.nii.gz", "--outdir", "{root}/file.txt"],
     "--outdir: {root}/file.txt exists and is not a folder"),
    ("project", ["--network", "{root}/notzip.keras", "--target", "{root}/scan.nii.gz", "--outdir", "{out}"],
     "not a .keras file"),
    # convert
    ("convert", ["{root}/net.pkl"], "expected two arguments"),
    ("convert", ["{root}/missing.pkl", "{out}"], "{root}/missing.pkl: no such file or folder"),
    ("convert", ["{root}/evil.pkl", "{out}"], "refusing to load posix.system"),
    ("convert", ["{root}/nan.pkl", "{out}"], "{root}/nan.pkl: 2 variables hold NaN or Inf"),
    # metrics: the deepbet encoder's size limit is checked before any weights or data are fetched
    ("metrics", ["--network", "{root}/G.keras", "--metrics", "fid3d", "--out", "{out}.json"],
     "--metrics: fid3d need volumes with every axis >= 33 voxels"),
]


@pytest.mark.parametrize("command, args, expected", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, capsys, command, args, expected):
    out = tmp_path / "out"
    fill = dict(root=files, out=out)
    before = sorted(p.name for p in files.iterdir())
    code = run_command(command, [a.format(**fill) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"{command}.py: error: ") and expected.format(**fill) in err[0], err[0]
    assert not out.exists() and sorted(p.name for p in files.iterdir()) == before
    assert not (files / "pwned").exists()


def test_help_exits_0_for_every_command(capsys):
    for name, (module, _) in cli.COMMANDS.items():
        if module.startswith("tf3dstylegan.commands.") and name in MODULES:
            assert cli.run(module, [name, "--help"]) == 0
            assert "flags:" in capsys.readouterr().out
    assert cli.main(["tf3dstylegan", "--help"]) == 0 and cli.main(["tf3dstylegan", "bogus"]) == 2


def test_a_tiny_file_claiming_a_huge_network_is_refused_before_anything_is_built(files, monkeypatch):
    import keras
    from tf3dstylegan import loading
    from tf3dstylegan.networks import Generator

    def never(*args, **kwargs):
        raise AssertionError("a network was built or deserialised before the file's claim was checked")
    monkeypatch.setattr(keras.models, "load_model", never)
    monkeypatch.setattr(Generator, "__init__", never)
    with pytest.raises(ValueError, match=r"claims a \(640, 768, 896\) generator"):
        loading.load_network(files / "huge.keras")
    assert (files / "huge.keras").stat().st_size < 200_000
