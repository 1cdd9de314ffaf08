"""What a new user meets: nothing written under ~, no TensorFlow start-up notices, plain logs in files, an honest
first ETA, one version number, help texts that name the commands of this install."""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import tf3dstylegan
from tf3dstylegan import cli, usage

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[|\x08")
TF_NOTICES = ("cuInit", "cpu_feature_guard", "absl::InitializeLog", "cudart_stub")
TINY = ["--cfg", "2mm-fd16", "--override", "base_size=[2,2,3]", "--override", "resolution_log2=3",
        "--override", "fmap_min=4", "--override", "fmap_max=4", "--override", "latent_size=8",
        "--override", "dlatent_size=8", "--override", "mapping_fmaps=8", "--override", "mapping_layers=2",
        "--override", "tick_kimg=0.004", "--batch", "4", "--kimg", "0.012"]
API = """
import sys, numpy as np, tf3dstylegan
G, D = tf3dstylegan.build_networks("demo")
G.export(sys.argv[1])
print("exported")
"""


def test_the_suite_keeps_its_caches_in_a_folder_of_its_own():
    home = Path.home().resolve()
    for variable in ("TF3DSTYLEGAN_CACHE", "KERAS_HOME"):
        path = Path(os.environ[variable]).resolve()
        assert home not in path.parents or "TF3DSTYLEGAN_TEST_CACHE" in os.environ, (variable, path)


def test_one_version_number():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tf3dstylegan.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", tf3dstylegan.__version__)


@pytest.mark.parametrize("prog, expected", [
    ("train.py", "python train.py"), ("tf3dstylegan-train", "tf3dstylegan-train"),
    ("tf3dstylegan train", "tf3dstylegan-train"), ("python -m tf3dstylegan train", "python -m tf3dstylegan train")])
def test_help_names_the_command_as_it_was_started(capsys, prog, expected):
    try:
        assert cli.run("tf3dstylegan.commands.train", [prog, "--help"], prog=prog) == 0
        text = capsys.readouterr().out
        assert f"`{expected}`" in text and "{prog}" not in text
        if prog != "train.py":
            assert "train.py" not in text.replace(expected, "")  # an installed wheel has no root scripts
    finally:
        usage.set_style("console")


def test_the_console_script_says_its_own_name(capsys):
    assert cli.main(["tf3dstylegan", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: tf3dstylegan COMMAND")
    assert cli.main(["/x/tf3dstylegan/__main__.py", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m tf3dstylegan COMMAND")


@pytest.mark.slow
def test_a_first_session_writes_nothing_under_home_and_prints_plain_lines(tmp_path):
    """Train, generate and the Python API with HOME pointing at an empty folder (and the suite's cache settings):
    HOME stays empty, stdout written to a file has no escape codes, stderr no TensorFlow notices, the first tick
    has no ETA (its step also compiles) and later ticks do."""
    from tf3dstylegan.data import RecordWriter
    home, records, out = tmp_path / "home", tmp_path / "records", tmp_path / "runs"
    home.mkdir()
    with RecordWriter(records, resolution_log2=3, name="tiny") as writer:  # 4x4x6 volumes
        for volume in np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 6)).astype(np.float32):
            writer.write(volume)
    env = dict(os.environ, HOME=str(home))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    log = tmp_path / "train.log"
    with open(log, "w") as stdout:
        train = subprocess.run([sys.executable, "train.py", *TINY, "--data", str(records), "--outdir", str(out)],
                               cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=600, env=env)
    text = log.read_text()
    assert train.returncode == 0, train.stderr[-3000:]
    assert not ANSI.search(text) and not any(n in train.stderr for n in TF_NOTICES), (text[-2000:], train.stderr)
    ticks = [line for line in text.splitlines() if line.startswith("tick ")]
    assert len(ticks) >= 3 and re.search(r"eta \?", ticks[0]) and all(re.search(r"eta \d", t) for t in ticks[1:])
    generate = subprocess.run([sys.executable, "generate.py", "--network", str(out / "00000-2mm-fd16"), "--seeds",
                               "0-1", "--outdir", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=env)
    assert generate.returncode == 0 and not any(n in generate.stderr for n in TF_NOTICES), generate.stderr[-2000:]
    api = subprocess.run([sys.executable, "-c", API, str(tmp_path / "saved")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=env)
    assert api.returncode == 0, api.stderr[-2000:]
    assert api.stdout.strip() == "exported" and not any(n in api.stderr for n in TF_NOTICES), (api.stdout, api.stderr)
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == []
