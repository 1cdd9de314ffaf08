"""train.py: a tiny run from TFRecords, rerun resumes, bad input gives a one-line error."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = ["--override", "base_size=[2,2,3]", "--override", "resolution_log2=3", "--override", "fmap_min=4",
        "--override", "fmap_max=4", "--override", "latent_size=8", "--override", "dlatent_size=8",
        "--override", "mapping_fmaps=8", "--override", "mapping_layers=2", "--override", "tick_kimg=0.004"]


def train_py(*args, timeout=300):
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from tf3dstylegan.data import RecordWriter
    folder = tmp_path_factory.mktemp("records")
    with RecordWriter(folder, resolution_log2=3, name="tiny") as writer:  # 4x4x6 volumes
        for volume in np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 6)).astype(np.float32):
            writer.write(volume)
    return folder


@pytest.mark.slow
def test_tiny_run_from_records_then_rerun_resumes(tmp_path, records):
    args = ["--cfg", "2mm-fd16", "--data", str(records), "--outdir", str(tmp_path), "--batch", "4", *TINY]
    first = train_py(*args, "--kimg", "0.008")
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "00000-2mm-fd16"
    assert (run / "checkpoints" / "latest").read_text().strip() == "ckpt-000000002"
    assert (run / "network-snapshot-000000.keras").is_file() and (run / "fakes000000.png").is_file()
    assert "tick 1 " in first.stdout and "sec/kimg" in first.stdout
    again = train_py(*args, "--kimg", "0.012")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step 2" in again.stdout
    assert (run / "checkpoints" / "latest").read_text().strip() == "ckpt-000000003"
    assert not (tmp_path / "00001-2mm-fd16").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "/no/such/folder: no such records folder"),
    (["--override", "no_such_field=1"], "unknown config fields ['no_such_field']"),
    (["--resume", "/no/such/run.pkl"], "/no/such/run.pkl: no such run folder or network file"),
    (["--batch", "6"], "not divisible by the minibatch-stddev group size 4"),
])
def test_bad_input_is_a_one_line_error(tmp_path, records, args, message):
    base = ["--data", str(records), "--outdir", str(tmp_path), "--kimg", "0.004", *TINY]
    proc = train_py(*base, *args)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: ") and message in last, proc.stderr[-2000:]


@pytest.mark.slow
def test_volumes_of_the_wrong_shape_name_the_folder(tmp_path, records):
    proc = train_py("--data", str(records), "--outdir", str(tmp_path), "--kimg", "0.004")  # 2mm-fd16: 80x96x112
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert str(records) in last and "(4, 4, 6, 1)" in last and "(80, 96, 112, 1)" in last


@pytest.mark.slow
def test_readme_demo_command_makes_a_checkpoint_a_keras_generator_and_a_preview(tmp_path):
    """`python train.py --cfg 2mm-fd16 --kimg 1` on the demo data, cut to one step (batch 4 on the CPU)."""
    proc = train_py("--cfg", "2mm-fd16", "--kimg", "0.004", "--outdir", str(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "00000-2mm-fd16"
    assert (run / "checkpoints" / "latest").read_text().strip() == "ckpt-000000001"
    assert (run / "network-snapshot-000000.keras").is_file() and (run / "fakes000000.png").is_file()
    assert "mni152-demo" in json.loads((run / "training_options.json").read_text())["data"]
