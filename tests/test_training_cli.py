"""train.py: a tiny run from TFRecords, rerun resumes, bad input gives a one-line error."""
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf3dstylegan.training.options import SMALL_DATA_AUG_P

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
    assert (run / "checkpoints" / "ckpt-2.index").is_file()
    assert (run / "network-snapshot-000000.004.keras").is_file() and (run / "fakes000000.004.png").is_file()
    assert "tick 1 " in first.stdout and "sec/kimg" in first.stdout
    again = train_py(*args, "--kimg", "0.012")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step 2" in again.stdout
    assert (run / "checkpoints" / "ckpt-3.index").is_file()
    assert not (tmp_path / "00001-2mm-fd16").exists()


# With a records folder given (the flag-only cases, --kimg, --batch, --override ..., are test_bad_inputs.py's).
BAD_INPUTS = [
    (["--data", "/no/such/folder"], "/no/such/folder: no such records folder"),
    (["--override", "no_such_field=1"], "unknown config fields ['no_such_field']"),
    (["--resume", "/no/such/run.pkl"], "--resume /no/such/run.pkl: no such run folder or network file"),
    (["--batch", "6"], "not divisible by the minibatch-stddev group size 4"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_a_one_line_error(tmp_path, records, capsys, args, message):
    """In-process, as train.py runs it (tf3dstylegan.cli.run): exit 2, one line, nothing written."""
    from test_bad_inputs import run_command
    code = run_command("train", ["--data", str(records), "--outdir", str(tmp_path), "--kimg", "0.004", *TINY, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error: ") and message in err[0], err
    assert not (tmp_path / "00000-2mm-fd16").exists()  # nothing written


@pytest.mark.slow
def test_the_script_itself_exits_2_with_one_line_and_no_traceback(tmp_path, records):
    proc = train_py("--data", str(records), "--outdir", str(tmp_path), "--kimg", "0.004", *TINY, "--batch", "6")
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: ") and "minibatch-stddev group size 4" in last, proc.stderr[-2000:]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "00000-2mm-fd16").exists()


@pytest.mark.slow
def test_volumes_of_the_wrong_shape_name_the_folder(tmp_path, records):
    proc = train_py("--data", str(records), "--outdir", str(tmp_path), "--kimg", "0.004")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert str(records) in last and "(4, 4, 6, 1)" in last and "(20, 24, 28, 1)" in last  # the demo preset


@pytest.mark.slow
def test_readme_demo_command_makes_a_checkpoint_a_keras_generator_and_a_preview(tmp_path):
    """The README's first command (`python train.py`, the demo preset on the 8 mm demo data), cut to one step."""
    proc = train_py("--kimg", "0.008", "--outdir", str(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "00000-demo"
    assert (run / "checkpoints" / "ckpt-1.index").is_file()
    assert (run / "network-snapshot-000000.008.keras").is_file() and (run / "fakes000000.008.png").is_file()
    options = json.loads((run / "training_options.json").read_text())
    assert "mni152-demo" in options["data"] and options["batch"] == options["config"]["batch_size"] == 8
    # 32 subjects: --aug auto is a fixed p of bc; the demo's 2-layer mapping network (README, Diversity)
    assert (options["aug"], options["augpipe"], options["aug_p"]) == ("fixed", "bc", SMALL_DATA_AUG_P)
    assert options["config"]["mapping_layers"] == 2
    assert "previews:" in proc.stdout and "--cfg 2mm-fd16" in proc.stdout
    assert "oneDNN" not in proc.stderr and "cuInit" not in proc.stderr  # TF's notices only with --verbose


@pytest.mark.slow
def test_a_second_writer_is_refused_and_ctrl_c_checkpoints_then_resumes(tmp_path, records):
    args = ["--cfg", "2mm-fd16", "--data", str(records), "--outdir", str(tmp_path), "--batch", "4", *TINY]
    first = subprocess.Popen([sys.executable, "train.py", *args, "--kimg", "10"], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in first.stdout:  # wait until the first tick's checkpoint is written
        if line.startswith("tick 1 "):
            break
    second = train_py(*args, "--kimg", "10")
    assert second.returncode == 2
    assert "another process is training into this run folder" in second.stderr.strip().splitlines()[-1]
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    last = err.strip().splitlines()[-1]
    assert first.returncode == 2 and "SIGINT: stopped at step" in last and "rerun the same command" in last, err
    step = int(re.search(r"stopped at step (\d+)", last)[1])
    run = tmp_path / "00000-2mm-fd16"
    assert (run / "checkpoints" / f"ckpt-{step}.index").is_file() and "Traceback" not in err
    again = train_py(*args, "--kimg", str((step + 1) * 4 / 1000))
    assert again.returncode == 0 and f"resuming from step {step}" in again.stdout, again.stderr[-2000:]


@pytest.mark.slow
def test_a_damaged_record_met_while_training_is_one_line_naming_the_folder(tmp_path, records):
    import shutil
    import tensorflow as tf
    damaged = tmp_path / "damaged"
    shutil.copytree(records, damaged)
    record_file = next(damaged.glob("*.tfrecords"))
    good = list(tf.data.TFRecordDataset(str(record_file)).as_numpy_iterator())
    bad = tf.train.Example(features=tf.train.Features(feature={
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 4, 4, 6])),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.zeros(10, np.float32).tobytes()]))}))
    with tf.io.TFRecordWriter(str(record_file)) as writer:
        for payload in good + [bad.SerializeToString()]:
            writer.write(payload)
    proc = train_py("--cfg", "2mm-fd16", "--data", str(damaged), "--outdir", str(tmp_path / "runs"), "--batch", "4",
                    "--kimg", "0.04", *TINY)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "does not fit the dataset" in last and "dataset_tool.py info" in last and str(damaged) in last, last
