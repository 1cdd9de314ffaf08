"""The original's TFRecord layout: writing, reading, LOD folders, shards, interruption, permissions."""
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.data import records
from tf3dstylegan.data.records import (RecordWriter, count_records, dataset_info, full_resolution_files,
                                       read_volumes)
from tf3dstylegan.data.volumes import DataError

SHAPE = (12, 16, 20)  # base_size (3, 4, 5), resolution_log2 4


def random_volumes(n, seed=0, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (n, *SHAPE)).astype(np.float32)


def write_original_record_file(path, volumes):
    """Records exactly as the original's TFRecordExporter.add_image3d_base writes them."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for volume in volumes:
            quant = np.clip(volume[None], 0, 1).astype(np.float32)  # [C, X, Y, Z]
            example = tf.train.Example(features=tf.train.Features(feature={
                "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=quant.shape)),
                "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[quant.tobytes()]))}))
            writer.write(example.SerializeToString())


def test_reads_records_written_as_the_original_does(tmp_path):
    volumes = random_volumes(3)
    write_original_record_file(tmp_path / f"{tmp_path.name}-r04.tfrecords", volumes)
    info = dataset_info(tmp_path)
    assert info.img_shape == SHAPE and info.num_channels == 1 and info.num_volumes == 3
    np.testing.assert_array_equal(np.stack(list(read_volumes(tmp_path)))[..., 0], volumes)


def test_written_records_parse_like_the_original_reader(tmp_path):
    volumes = random_volumes(2, low=-0.2, high=1.2)
    with RecordWriter(tmp_path, 4) as writer:
        for volume in volumes:
            writer.write(volume)
    assert [p.name for p in tmp_path.iterdir()] == [f"{tmp_path.name}-r04.tfrecords"]
    for record, volume in zip(tf.data.TFRecordDataset(str(next(tmp_path.iterdir()))), volumes):
        features = tf.io.parse_single_example(record, features={  # parse_tfrecord_tf of the original
            "shape": tf.io.FixedLenFeature([4], tf.int64), "data": tf.io.FixedLenFeature([], tf.string)})
        parsed = tf.reshape(tf.io.decode_raw(features["data"], tf.float32), features["shape"])
        assert parsed.shape == (1, *SHAPE)
        np.testing.assert_array_equal(parsed[0].numpy(), np.clip(volume, 0, 1))


def test_lods_like_the_original_and_reader_uses_full_resolution(tmp_path):
    volumes = random_volumes(2, low=-0.5, high=1.5)
    with RecordWriter(tmp_path, 4, lods=True) as writer:
        for volume in volumes:
            writer.write(volume)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{tmp_path.name}-r0{r}.tfrecords" for r in (2, 3, 4)]
    half = volumes.reshape(2, 6, 2, 8, 2, 10, 2).mean(axis=(2, 4, 6))  # from unclipped data
    lod1 = [np.frombuffer(tf.train.Example.FromString(r.numpy()).features.feature["data"].bytes_list.value[0],
                          np.float32).reshape(6, 8, 10)
            for r in tf.data.TFRecordDataset(str(tmp_path / f"{tmp_path.name}-r03.tfrecords"))]
    np.testing.assert_allclose(lod1, np.clip(half, 0, 1), atol=1e-6)
    files, shape = full_resolution_files(tmp_path)
    assert [f.name for f in files] == [f"{tmp_path.name}-r04.tfrecords"] and shape == (1, *SHAPE)


def test_shards_are_balanced_and_hold_every_volume(tmp_path):
    volumes = random_volumes(7, seed=1)
    with RecordWriter(tmp_path, 4, num_shards=3) as writer:
        for volume in volumes:
            writer.write(volume)
    info = dataset_info(tmp_path)
    assert len(info.files) == 3 and info.num_volumes == 7
    assert sorted(count_records(f) for f in info.files) == [2, 2, 3]
    got = np.stack(list(read_volumes(tmp_path)))[..., 0]
    assert sorted(v.sum() for v in got) == pytest.approx(sorted(v.sum() for v in volumes))


def test_exception_during_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with RecordWriter(tmp_path, 4, num_shards=2) as writer:
            writer.write(random_volumes(1)[0])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with RecordWriter(tmp_path / "new", 4):
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # the folder it made is gone too


def test_record_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with RecordWriter(tmp_path, 4) as writer:
            writer.write(random_volumes(1)[0])
    finally:
        os.umask(umask)
    assert stat.S_IMODE(next(tmp_path.glob("*.tfrecords")).stat().st_mode) == 0o644  # not mkstemp's 0600


@pytest.mark.slow
def test_killed_writer_leaves_no_final_named_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, numpy as np
        from tf3dstylegan.data.records import RecordWriter
        writer = RecordWriter({str(tmp_path)!r}, 4)
        for _ in range(3):
            writer.write(np.ones({SHAPE}, np.float32))
        os.kill(os.getpid(), 9)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert result.returncode != 0
    assert not list(tmp_path.glob("*.tfrecords"))
    with pytest.raises(DataError, match="no records"):
        dataset_info(tmp_path)


def test_truncated_record_file_is_reported(tmp_path):
    path = tmp_path / "x-r04.tfrecords"
    write_original_record_file(path, random_volumes(2))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        dataset_info(tmp_path)
    assert str(err.value).startswith(str(path))


def test_missing_or_empty_records_folder(tmp_path):
    with pytest.raises(DataError, match="no records"):
        dataset_info(tmp_path)
    with pytest.raises(DataError, match="no such"):
        dataset_info(tmp_path / "absent")


def test_writer_refuses_nan_and_ignores_planted_temporary_links(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "out").mkdir()
    os.symlink(victim, tmp_path / "out" / "out-r04.tfrecords.tmp")  # the temporary name of earlier versions
    with RecordWriter(tmp_path / "out", 4) as writer:
        writer.write(np.ones(SHAPE, np.float32))
        with pytest.raises(ValueError, match="NaN or Inf"):
            writer.write(np.full(SHAPE, np.nan, np.float32))
    assert victim.read_text() == "keep" and not (tmp_path / "out" / "out-r04.tfrecords").is_symlink()
    assert len(list(read_volumes(tmp_path / "out"))) == 1


def test_unwritable_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records.tempfile, "mkstemp", refuse)  # what a read-only folder does to a non-root user
    with pytest.raises(DataError) as err:
        RecordWriter(tmp_path / "out", 4)
    assert str(err.value) == f"{tmp_path / 'out'}: cannot write: Permission denied"
    assert list(tmp_path.iterdir()) == []
