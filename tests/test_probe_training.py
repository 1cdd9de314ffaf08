"""Probe 2026-12-01, training: a run is continued only by the same job, checkpoints that cannot be written or read
are named, and the flags and records that made no sense are refused or noted (rows N43-N46, N74-N81, N98, N112,
N113, R123, R126, R127)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import checkpoints, load_config
from tf3dstylegan.backend.tensorflow import checkpoints as tf_checkpoints
from tf3dstylegan.data import RecordWriter
from tf3dstylegan.data.labels import LabelEncoding, write_labels
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.training import TrainingOptions, resolve_run, train
from tf3dstylegan.training.job import data_source, differences, job_identity
from tf3dstylegan.training.options import SMALL_DATA_AUG_P

TINY = dict(base_size=[2, 2, 2], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2, batch_size=4, tick_kimg=0.004)


def tiny_cfg(**overrides):
    return load_config("2mm-fd16", **dict(TINY, name="tiny", **overrides))


def write_records(folder, count=8, labels=False, high=1.0):
    with RecordWriter(folder, resolution_log2=3, name=Path(folder).name) as writer:  # 4x4x4 volumes
        for volume in np.random.default_rng(0).uniform(0, 1, (count, 4, 4, 4)).astype(np.float32):
            writer.write(volume)
    if labels:
        rows = [{"age": 50.0 + 5 * i, "sex": "FM"[i % 2]} for i in range(count)]
        encoding = LabelEncoding.fit(["age", "sex"], ["continuous", "categorical"], rows)
        write_labels(folder, encoding.encode_rows(rows), encoding)
    if high != 1.0:  # records another tool wrote, with values beyond the format's [0, 1]
        file = next(Path(folder).glob("*.tfrecords"))
        with tf.io.TFRecordWriter(str(file)) as writer:
            for volume in np.random.default_rng(0).uniform(0, high, (count, 1, 4, 4, 4)).astype("<f4"):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(volume.shape))),
                    "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[volume.tobytes()]))}))
                    .SerializeToString())
    return Path(folder)


def files_of(folder):
    """{relative path: bytes} of every file under a folder (the run lock excluded)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-records")
    return {"plain": write_records(root / "plain"), "labelled": write_records(root / "labelled", labels=True),
            "other": write_records(root / "other")}


@pytest.mark.slow
def test_reruns_continue_only_the_same_job_and_never_touch_another_runs_files(tmp_path, records):
    """The README's sequence (plain data, then labelled, then plain again), and other records with the same
    preset; every rerun continues only the run of its own job."""
    lines = []
    first = train(tiny_cfg(), records["plain"], tmp_path, kimg=0.004, log=lines.append)
    before = files_of(first)
    lines.clear()
    second = train(tiny_cfg(), records["labelled"], tmp_path, kimg=0.004, log=lines.append)
    assert second == tmp_path / "00001-tiny"
    assert f"not resuming {first}: its data is {records['plain'].resolve()} (this run: " \
           f"{records['labelled'].resolve()})" in lines[0]
    third = train(tiny_cfg(), records["other"], tmp_path, kimg=0.004, aug="none", aug_p=0.5, log=lambda _: None)
    assert third == tmp_path / "00002-tiny"
    assert files_of(first) == before  # the other jobs changed nothing of the first run
    lines.clear()
    again = train(tiny_cfg(), records["plain"], tmp_path, kimg=0.008, log=lines.append)
    assert again == first and any(line.startswith("resuming from step 1") for line in lines), lines
    options = json.loads((first / "training_options.json").read_text())
    assert options["job"]["data"] == str(records["plain"].resolve()) and options["job"]["conditional"] is False
    labelled = json.loads((second / "training_options.json").read_text())
    assert labelled["job"]["conditional"] is True and labelled["job"]["model"]["label_size"] == 3
    assert (options["aug"], options["augpipe"], options["aug_p"]) == ("fixed", "bc", SMALL_DATA_AUG_P)  # auto, small
    plain = json.loads((third / "training_options.json").read_text())
    assert plain["aug"] == "none" and "aug_p" not in plain and "augpipe" not in plain  # unused: not recorded (N46)


@pytest.mark.slow
def test_resume_run_of_another_job_is_one_line_and_writes_nothing(tmp_path, records):
    """N44/N45: resuming with another --augpipe or --aug none names what differs; nothing is written."""
    run = train(tiny_cfg(), records["plain"], tmp_path, kimg=0.004, aug="ada", augpipe="bgc", log=lambda _: None)
    before = files_of(run)
    with pytest.raises(ValueError, match=r"--resume .*00000-tiny: its --augpipe is bgc \(this run: c\)"):
        train(tiny_cfg(), records["plain"], tmp_path, kimg=0.008, aug="ada", augpipe="c", resume=str(run))
    with pytest.raises(ValueError, match=r"its --aug is ada \(this run: none\)"):
        train(tiny_cfg(), records["plain"], tmp_path, kimg=0.008, aug="none", resume=str(run))
    with pytest.raises(ValueError, match=r"its --aug is ada \(this run: fixed\)"):  # the default: auto, a fixed p
        train(tiny_cfg(), records["plain"], tmp_path, kimg=0.008, resume=str(run))
    with pytest.raises(ValueError, match=r"its config field fmap_max is 4 \(this run: 8\)"):
        train(tiny_cfg(fmap_max=8), records["plain"], tmp_path, kimg=0.008, aug="ada", resume=str(run))
    assert files_of(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["00000-tiny"]


def test_job_identity_names_the_demo_by_its_variant_and_leaves_unused_options_out(tmp_path):
    demo = tmp_path / "mni152-demo-v1-8mm-n32-seed0"
    demo.mkdir()
    (demo / "demo.json").write_text("{}")
    assert data_source(demo) == "demo mni152-demo-v1-8mm-n32-seed0"
    assert data_source(tmp_path / "x" / ".." / "records") == str((tmp_path / "records").resolve())
    plain = job_identity(tiny_cfg(), demo, TrainingOptions(aug="none", aug_p=0.5, augpipe="bgcfnox"))
    assert plain["augment"] == {"aug": "none"}
    ada = job_identity(tiny_cfg(), demo, TrainingOptions(aug="ada", augpipe="bgc"))
    assert differences(plain, ada)[0].startswith("its --aug is none (this run: ada)")
    assert differences(ada, ada) == []
    deep = "/data/" + "study-" * 12  # long data paths are named whole: they often differ only at the end
    assert differences(dict(ada, data=deep + "plain"), dict(ada, data=deep + "labelled")) == [
        f"its data is {deep}plain (this run: {deep}labelled)"]


def make_run(outdir, job, steps=(1, 2)):
    """A run folder with training_options.json of `job` and checkpoints of a variable at `steps`."""
    run = Path(outdir) / "00000-tiny"
    run.mkdir(parents=True)
    (run / "training_options.json").write_text(json.dumps({"config": tiny_cfg().to_dict(), "job": job}))
    writer = tf_checkpoints.CheckpointWriter(run / "checkpoints", {"var": tf.Variable(np.zeros(3, np.float32))})
    for step in steps:
        writer.save(step)
    return run


def test_incomplete_checkpoints_are_said_not_silently_skipped(tmp_path):
    """N74: the newest .index deleted is named; N75: every .index deleted is an error, not a fresh run."""
    job = job_identity(tiny_cfg(), None, TrainingOptions().resolved(tiny_cfg()))
    run = make_run(tmp_path, job)
    (run / "checkpoints" / "ckpt-2.index").unlink()
    lines = []
    assert resolve_run(tmp_path, "tiny", "auto", job, lines.append) == (run, run / "checkpoints")
    assert lines == [f"skipping ckpt-2 in {run / 'checkpoints'}: incomplete (no .index)"]
    (run / "checkpoints" / "ckpt-1.index").unlink()
    for resume in ("auto", str(run)):
        with pytest.raises(ValueError, match=r"checkpoints: no complete checkpoint \(ckpt-2, ckpt-1 lack their "
                                             r"\.index: incomplete or damaged\).*--resume none"):
            resolve_run(tmp_path, "tiny", resume, job, lambda _: None)


def test_an_unreadable_options_file_is_not_resumed(tmp_path):
    """N113: a run whose training_options.json cannot be read is never continued (nor rewritten)."""
    job = job_identity(tiny_cfg(), None, TrainingOptions().resolved(tiny_cfg()))
    run = make_run(tmp_path, job)
    (run / "training_options.json").write_text(json.dumps({"config": dict(tiny_cfg().to_dict(), name="../../pwn")}))
    with pytest.raises(ValueError, match=r"--resume .*: its training_options.json is unreadable \(config field name"):
        resolve_run(tmp_path, "tiny", str(run), job)
    lines = []
    assert resolve_run(tmp_path, "tiny", "auto", job, lines.append) == (tmp_path / "00001-tiny", None)
    assert lines[0].startswith(f"not resuming {run}: its training_options.json is unreadable")


def test_a_failed_checkpoint_write_names_the_folder_and_cleans_its_temporary(tmp_path, monkeypatch):
    """N76/N77: read-only folder or full disk during SaveV2: one line naming the folder, ckpt-N_temp removed, the
    last good checkpoint kept."""
    var = tf.Variable(np.zeros(3, np.float32))
    writer = tf_checkpoints.CheckpointWriter(tmp_path, {"var": var})
    writer.save(1)

    def full_disk(self, checkpoint_number=None):
        (tmp_path / f"ckpt-{checkpoint_number}_temp").mkdir()
        raise tf.errors.ResourceExhaustedError(None, None, f"{tmp_path}/ckpt-2_temp/part-00000-of-00001.data; No "
                                                           "space left on device [Op:SaveV2]")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(OSError, match=rf"^{tmp_path}: cannot write checkpoint 2 \(No space left on device\); the "
                                      "last good checkpoint is kept$"):
        writer.save(2)
    assert not list(tmp_path.glob("*_temp")) and [p.name for p, _ in checkpoints.candidates(tmp_path)] == ["ckpt-1"]


@pytest.mark.slow
def test_a_failed_snapshot_write_names_the_run_folder(tmp_path, records, monkeypatch):
    """N78: a full disk at the first snapshot: one line naming the run folder."""
    from tf3dstylegan.training import loop

    def full_disk(path, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(loop, "write_bytes_atomic", full_disk)
    with pytest.raises(OSError, match=r"00000-tiny: cannot write the snapshot 000000.004 \(No space left on device\)"):
        train(tiny_cfg(), records["plain"], tmp_path, kimg=0.004, log=lambda _: None)
    assert not list((tmp_path / "00000-tiny").glob(".*.tmp*"))


def test_the_run_lock_clears_what_a_killed_writer_left(tmp_path):
    """N81: a partial `.network-snapshot-*.tmp.keras` and a `ckpt-N_temp` folder of a killed run are removed when
    the next writer takes the lock; other files stay."""
    from tf3dstylegan.training.runs import RunLock
    run = tmp_path / "00000-tiny"
    (run / "checkpoints" / "ckpt-6_temp").mkdir(parents=True)
    (run / ".network-snapshot-000000.004.keras.ab12cd_9.tmp.keras").write_bytes(b"partial")
    (run / ".hidden-note").write_text("mine")
    with RunLock(run):
        assert sorted(p.name for p in run.iterdir()) == [".hidden-note", ".lock", "checkpoints"]
        assert not list((run / "checkpoints").iterdir())


def test_ada_kimg_too_small_to_be_a_speed_is_refused():
    """N43: --ada_kimg 1e-300 made p's step inf (then NaN, blamed on the data)."""
    with pytest.raises(ValueError, match=r"--ada_kimg: must be a finite number >= 0.001"):
        TrainingOptions(aug="ada", ada_kimg=1e-300)
    assert TrainingOptions(aug="ada", ada_kimg=0.001).ada_kimg == 0.001


def test_records_that_train_badly_are_noted(tmp_path):
    """R126: values 0..1000 are warned about; R127: fewer volumes than a batch are noted."""
    from tf3dstylegan.data.preflight import data_notes
    from tf3dstylegan.data.records import dataset_info
    assert data_notes(dataset_info(write_records(tmp_path / "fine")), 4) == []
    notes = data_notes(dataset_info(write_records(tmp_path / "raw", high=1000.0)), 4)
    assert len(notes) == 1 and "raw-r03.tfrecords: its first record holds values" in notes[0]
    assert "outside the [0, 1]" in notes[0] and "--normalize percentile" in notes[0]
    single = data_notes(dataset_info(write_records(tmp_path / "single", count=1)), 4)
    assert single == [f"note: {tmp_path / 'single'} holds 1 volume(s), fewer than the batch of 4: every batch "
                      "repeats them"]


def record_file(folder, shape, payload):
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "bad-r03.tfrecords")) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=shape)),
            "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[payload]))})).SerializeToString())
    return folder


@pytest.mark.parametrize("shape, message", [
    ([1, 2 ** 32, 2 ** 32, 8], r"record 0 claims shape \[1, 4294967296, 4294967296, 8\] "
                               r"\(147,573,952,589,676,412,928 float32 values\) but its payload holds 256 "
                               r"bytes"),  # N98: the product overflows int64
    ([1, -8, 4, 2], r"record 0 has shape \[1, -8, 4, 2\]: every size must be >= 1"),  # R123
])
def test_record_shapes_that_cannot_be_are_refused_naming_the_file(tmp_path, shape, message):
    from tf3dstylegan.data import dataset_info
    folder = record_file(tmp_path / "bad", shape, np.zeros(64, "<f4").tobytes())
    with pytest.raises(DataError, match=rf"bad-r03.tfrecords: {message}"):
        dataset_info(folder)


def test_a_fifo_named_like_records_is_refused_without_opening_it(tmp_path):
    """N112: train and info blocked forever opening a FIFO `.tfrecords`."""
    from tf3dstylegan.data import dataset_info
    folder = tmp_path / "fifo"
    folder.mkdir()
    os.mkfifo(folder / "x-r03.tfrecords")
    with pytest.raises(DataError, match=r"x-r03.tfrecords: not a regular file"):
        dataset_info(folder)
    with pytest.raises(DataError, match=r"x-r03.tfrecords: not a regular file or folder"):
        dataset_info(folder / "x-r03.tfrecords")


@pytest.mark.slow
def test_the_datas_normalisation_travels_to_the_network_and_to_project(tmp_path, capsys):
    """The dataset tool records --normalize beside the records, training puts it in training_options.json and in
    every .keras generator, and project uses it by default."""
    import nibabel as nib
    from tf3dstylegan import cli
    from tf3dstylegan.commands.dataset import normalize_argv
    from tf3dstylegan.data.provenance import recorded_normalization
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        volume = np.zeros((8, 8, 8), np.int16)
        volume[2:6, 2:6, 2:6] = rng.integers(300, 978, (4, 4, 4))
        nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "in" / f"s{i}.nii.gz"))
    assert cli.run("tf3dstylegan.commands.dataset", normalize_argv(
        ["dataset_tool.py", "create-from-images3d", str(tmp_path / "rec"), str(tmp_path / "in"), "--base_size",
         "2,2,2", "--normalize", "percentile"])) == 0
    assert recorded_normalization(tmp_path / "rec") == "percentile"
    run = train(tiny_cfg(resolution_log2=4), tmp_path / "rec", tmp_path / "runs", kimg=0.004, log=lambda _: None)
    assert json.loads((run / "training_options.json").read_text())["config"]["data_normalize"] == "percentile"
    from tf3dstylegan.loading import load_network
    assert load_network(next(run.glob("network-snapshot-*.keras"))).config.data_normalize == "percentile"
    capsys.readouterr()
    assert cli.run("tf3dstylegan.commands.project", ["project", "--network", str(run), "--target",
                                                      str(tmp_path / "in" / "s0.nii.gz"), "--outdir",
                                                      str(tmp_path / "p"), "--steps", "1"]) == 0
    assert capsys.readouterr().out.startswith("--normalize percentile (as the training data)")


def test_a_shape_stored_as_floats_is_named_as_such(tmp_path):
    """N100: a float-list shape was reported as 'got ()'."""
    from tf3dstylegan.data import dataset_info
    folder = tmp_path / "floats"
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "f-r03.tfrecords")) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "shape": tf.train.Feature(float_list=tf.train.FloatList(value=[1, 4, 4, 4])),
            "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.zeros(64, "<f4").tobytes()]))}))
            .SerializeToString())
    with pytest.raises(DataError, match=r"f-r03.tfrecords: record 'shape' must hold 4 int64 values \[C, X, Y, Z\], got "
                                        r"a float list \(\)"):
        dataset_info(folder)


@pytest.mark.parametrize("flags, note", [
    (["--aug", "none", "--aug_p", "0.5", "--augpipe", "bgcfnox"], "--aug none does not use --augpipe, --aug_p"),
    (["--aug", "fixed", "--aug_p", "0.2", "--aug_target", "0.5", "--ada_kimg", "5"],
     "--aug fixed does not use --aug_target, --ada_kimg"),
    (["--aug", "auto", "--aug_target", "0.5", "--ada_kimg", "5", "--aug_p", "0.1"],
     "--aug auto does not use --aug_target, --ada_kimg"),  # auto becomes fixed or none
    (["--aug", "auto", "--aug_p", "0.1", "--augpipe", "bgc"], None),
])
def test_unused_augmentation_flags_are_said_to_be_ignored(tmp_path, capsys, flags, note):
    """N46: --aug none --aug_p 0.5 --augpipe bgcfnox recorded values that are never used."""
    from tf3dstylegan import cli
    with pytest.raises(SystemExit):
        cli.run("tf3dstylegan.commands.train", ["train.py", *flags, "--data", str(tmp_path / "missing"),
                                                "--outdir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert (f"note: {note}: ignored and not recorded" in out) if note else "does not use" not in out
    assert err.strip().endswith("no such records folder or file") and not list(tmp_path.iterdir())
