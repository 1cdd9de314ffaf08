"""`python -m tf3dstylegan metrics`: flags checked before any work, the medicalnet protocol end to end on a
16³ generator with the tiny MedicalNet, memorisation with its PNG, ranges in the table and the JSON."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import cli

DATA = Path(__file__).parent / "data"
TINY_WEIGHTS = str(DATA / "medicalnet_tiny.pth")


def run(argv):
    """(exit code, stdout, stderr) of the metrics command run in this process."""
    return cli.run("tf3dstylegan.commands.metrics", ["metrics"] + argv)


def write_records(folder, volumes):
    """Records in the original layout: `<folder>-r06.tfrecords`, shape [C, X, Y, Z], float32 in [0, 1]."""
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / f"{folder.name}-r06.tfrecords")) as writer:
        for volume in volumes:
            data = np.clip(volume[None], 0, 1).astype(np.float32)
            example = tf.train.Example(features=tf.train.Features(feature={
                "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=data.shape)),
                "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data.tobytes()]))}))
            writer.write(example.SerializeToString())
    return folder


@pytest.mark.parametrize("argv,message", [
    (["--metrics", "fid_slices,inception_score"], "--metrics: unknown metrics ['inception_score']"),
    (["--num", "0"], "--num: must be >= 2, got 0"),
    (["--batch_size", "0"], "--batch_size: must be >= 1"),
    (["--intervals", "1"], "--intervals: must be 0 (no ranges) or >= 2"),
    (["--protocol", "medicalnet"], "--medicalnet_weights: required by the MedicalNet metrics"),
    (["--protocol", "medicalnet", "--medicalnet_weights", "/nonexistent/r50.pth"],
     "--medicalnet_weights: /nonexistent/r50.pth: no such file"),
    (["--protocol", "paper", "--noreference"], "--reference: the paper protocol includes the real-vs-real row"),
    (["--data", "/nonexistent/records"], "--data: /nonexistent/records: no such file or folder"),
    (["--metrics", "bmmd2", "--train_data", "/tmp"], "--train_data: only used by the memorisation metric"),
    (["--metrics", "bmmd2", "--out", "/nonexistent/dir/m.json"], "--out: /nonexistent/dir: no such folder"),
])
def test_flags_checked_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["--network", TINY_WEIGHTS] + argv)  # exists; checks fail before it is read
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.fixture(scope="module")
def generator_and_data(tmp_path_factory):
    import tf3dstylegan
    folder = tmp_path_factory.mktemp("metrics_command")
    G, _ = tf3dstylegan.build_networks(tf3dstylegan.load_config("2mm-fd16", resolution_log2=6, base_size=(1, 1, 1)))
    G.save(folder / "G.keras")
    rng = np.random.default_rng(0)
    volumes = np.clip(0.5 + 0.25 * rng.normal(size=(16, 16, 16, 16)), 0, 1)
    return folder / "G.keras", write_records(folder / "recs", volumes)


@pytest.mark.slow
def test_medicalnet_protocol_with_memorisation_and_ranges(generator_and_data, tmp_path, capsys):
    network, records = generator_and_data
    out = tmp_path / "m.json"
    code = run(["--network", str(network), "--data", str(records), "--protocol", "medicalnet",
                "--medicalnet_weights", TINY_WEIGHTS, "--metrics", "bmmd2,msssim,memorisation", "--num", "8",
                "--batch_size", "4", "--intervals", "4", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    values = json.loads(out.read_text())
    assert values["protocol"] == "medicalnet" and values["num"] == 8
    assert values["medicalnet_weights_sha256"] == hashlib.sha256(Path(TINY_WEIGHTS).read_bytes()).hexdigest()
    for key in ("fid_medicalnet", "kid_medicalnet", "precision_medicalnet", "recall_medicalnet",
                "memorisation_fraction"):
        assert np.isfinite(values[key]) and np.isfinite(values[f"real_{key}"]), key
        assert values[f"{key}_lo"] <= values[f"{key}_hi"] and values[f"{key}_n"] == 8.0, key
    assert values["fid_medicalnet"] > values["real_fid_medicalnet"]  # an untrained generator vs real halves
    for key in ("bmmd2", "msssim"):  # 2 batches, 4 pairs: too few for a range
        assert f"{key}_lo" not in values and np.isfinite(values[key]) and np.isfinite(values[f"real_{key}"])
    row = next(line for line in stdout.splitlines() if line.startswith("fid_medicalnet "))
    assert f"[{values['fid_medicalnet_lo']:.5g}, " in row and row.rstrip().endswith(" 8")
    assert "95% range: " in stdout and "halves" in stdout  # how the ranges were made, under the table
    png = tmp_path / "m_memorisation.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in stdout
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_weights_file_named(generator_and_data, tmp_path, capsys):
    network, records = generator_and_data
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        run(["--network", str(network), "--data", str(records), "--protocol", "medicalnet",
             "--medicalnet_weights", str(bad), "--num", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not a torch.save file" in err[0]
