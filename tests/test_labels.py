"""Covariate tables -> label encoding -> labels beside the records -> (volumes, labels) batches."""
import json

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.data import (DataError, LabelEncoding, create_from_images3d, dataset_info, make_dataset,
                               read_labels)
from tf3dstylegan.data.labels import labels_path, parse_encoding, write_labels
from tf3dstylegan.data.records import RecordWriter, read_volumes
from tf3dstylegan.data.table import file_stem, match_files, read_table

SHAPE = (12, 16, 20)
BASE = (3, 4, 5)


def make_subjects(folder, n, names=None):
    """n random volumes as NIfTI files named sub-XX_T1w.nii.gz; returns {stem: volume}."""
    folder.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for i, volume in enumerate(np.random.default_rng(0).random((n, *SHAPE), dtype=np.float32)):
        name = names[i] if names else f"sub-{i:02d}_T1w"
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / f"{name}.nii.gz"))
        volumes[name] = volume
    return volumes


def write_table(path, rows, header="participant_id\tage\tsex"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def ages_table(path, n):
    return write_table(path, [f"sub-{i:02d}\t{50 + 3 * i}\t{'FM'[i % 2]}" for i in range(n)])


def test_rows_match_stems_or_whole_underscore_parts(tmp_path):
    table = read_table(write_table(tmp_path / "p.csv", ["sub-1,60", "sub-10_ses-2,70", "scan_a,80"],
                                   header="id,age"))
    assert table.id_column == "id" and table.columns == ("age",) and table.lines == (2, 3, 4)
    files = [tmp_path / n for n in ("sub-1_T1w.nii.gz", "sub-10_ses-2.nii", "scan_a.npz", "x_sub-1.nii")]
    assert match_files(table, files) == [0, 1, 2, 0]
    assert file_stem("a.b.nii.gz") == "a.b"
    with pytest.raises(DataError, match="no row of"):
        match_files(table, [tmp_path / "sub-10_T1w.nii.gz"])  # sub-1 is not a part of sub-10


def test_encoding_standardises_one_hots_and_round_trips(tmp_path):
    encoding = LabelEncoding.from_table(ages_table(tmp_path / "p.tsv", 4), categorical=["sex=M|F"])
    assert encoding.names == ("age", "sex") and encoding.kinds == ("continuous", "categorical")
    assert encoding.label_size == 3 and encoding.covariates[1].categories == ("M", "F")
    ages = np.array([50, 53, 56, 59])
    np.testing.assert_allclose(encoding.samples[:, 0], (ages - ages.mean()) / ages.std(), rtol=1e-6)
    np.testing.assert_array_equal(encoding.samples[:, 1:], [[0, 1], [1, 0], [0, 1], [1, 0]])
    vector = encoding.encode({"age": "72.5", "sex": "F"})
    assert vector.dtype == np.float32 and vector.shape == (3,)
    assert encoding.decode(vector) == pytest.approx({"age": 72.5, "sex": "F"})
    again = LabelEncoding.from_json(json.loads(json.dumps(encoding.to_json(include_samples=True))))
    assert again == encoding
    np.testing.assert_array_equal(again.samples, encoding.samples)
    assert "samples" not in encoding.to_json()
    for values, message in [({"age": 60}, "missing covariate 'sex'"), ({"age": 1, "sex": "F", "x": 1}, "unknown "
                            "covariate 'x'"), ({"age": "old", "sex": "F"}, "finite number"),
                            ({"age": 60, "sex": "X"}, "unknown category 'X'")]:
        with pytest.raises(ValueError, match=message):
            encoding.encode(values)
    with pytest.raises(ValueError, match="not a label encoding"):
        LabelEncoding.from_json({"format": "something else"})


def test_sample_draws_from_the_empirical_rows(tmp_path):
    encoding = LabelEncoding.from_table(ages_table(tmp_path / "p.tsv", 5))
    drawn = encoding.sample(np.random.default_rng(0), 200)
    assert drawn.shape == (200, encoding.label_size) and drawn.dtype == np.float32
    rows = {tuple(r) for r in encoding.samples}
    assert {tuple(r) for r in drawn} == rows  # every row drawn, nothing else
    np.testing.assert_array_equal(drawn, encoding.sample(np.random.default_rng(0), 200))


def test_labels_file_is_the_originals_npy(tmp_path):
    labels = np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32)
    (path,) = write_labels(tmp_path, labels)
    assert path == tmp_path / f"{tmp_path.name}-rxx.labels" == labels_path(tmp_path)
    np.testing.assert_array_equal(np.load(path), labels)  # what the original's np.load reads
    (tmp_path / "labels.json").unlink(missing_ok=True)
    original = tmp_path / "orig"
    original.mkdir()
    with open(original / "orig-rxx.labels", "wb") as f:  # as the original's add_labels writes it
        np.save(f, labels.astype(np.float64))
    assert read_labels(original)[0] is None
    np.testing.assert_array_equal(read_labels(original)[1], labels)


def test_labels_are_read_once_while_their_files_are_unchanged(tmp_path):
    encoding = LabelEncoding.from_table(ages_table(tmp_path / "p.tsv", 4))
    folder = tmp_path / "records"
    folder.mkdir()
    write_labels(folder, encoding.samples, encoding)
    first, second = read_labels(folder), read_labels(folder)
    assert first[0] is second[0] and first[1] is second[1]  # one parse serves training, pipeline and checks
    assert not first[1].flags.writeable  # so that no caller can change another's copy
    write_labels(folder, encoding.samples[::-1] * 2, encoding)  # rewritten: read again
    np.testing.assert_array_equal(read_labels(folder)[1], encoding.samples[::-1] * 2)
    text = json.dumps(encoding.to_json())
    assert parse_encoding(text) is parse_encoding(text) == LabelEncoding.from_json(json.loads(text))


def test_create_writes_labels_in_record_order(tmp_path):
    volumes = make_subjects(tmp_path / "in", 7)
    table = ages_table(tmp_path / "in" / "participants.tsv", 8)  # inside INDIR: not taken for a volume
    summary = create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE, labels=table, shards=2)
    assert summary["num_volumes"] == 7 and summary["label_size"] == 3
    encoding, labels = read_labels(tmp_path / "out")
    assert labels.shape == (7, 3) and dataset_info(tmp_path / "out").label_size == 3
    by_volume = {v.tobytes(): int(k[4:6]) for k, v in volumes.items()}
    # read_volumes reads the shard files one after the other: record j of shard s is label row 2 j + s
    rows = [2 * j + s for s, n in ((0, 4), (1, 3)) for j in range(n)]
    for volume, row in zip(read_volumes(tmp_path / "out"), rows, strict=True):
        subject = by_volume[volume[..., 0].tobytes()]
        assert encoding.decode(labels[row]) == pytest.approx({"age": 50 + 3 * subject, "sex": "FM"[subject % 2]})


def test_skipped_files_have_no_label_row(tmp_path):
    make_subjects(tmp_path / "in", 4)
    (tmp_path / "in" / "sub-02_T1w.nii.gz").write_bytes(b"broken")
    summary = create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE, shuffle=False,
                                   labels=ages_table(tmp_path / "p.tsv", 4), skip_bad=True)
    encoding, labels = read_labels(tmp_path / "out")
    assert summary["num_volumes"] == 3 and len(summary["skipped"]) == 1
    assert [encoding.decode(r)["age"] for r in labels] == pytest.approx([50, 53, 59])


@pytest.fixture(name="labelled")
def fixture_labelled(tmp_path):
    """A 3-shard records folder of 10 volumes whose label is [volume sum, index]."""
    volumes = np.random.default_rng(2).random((10, *SHAPE), dtype=np.float32)
    with RecordWriter(tmp_path / "data", 4, num_shards=3) as writer:
        for volume in volumes:
            writer.write(volume)
    write_labels(tmp_path / "data", np.stack([(volumes * 2 - 1).sum(axis=(1, 2, 3)), np.arange(10)], 1))
    return tmp_path / "data"


def assert_aligned(batches):
    """Every volume's label holds its own sum: records and labels stayed together."""
    count = 0
    for volumes, labels in batches:
        np.testing.assert_allclose(tf.reduce_sum(volumes, axis=[1, 2, 3, 4]).numpy(), labels.numpy()[:, 0], rtol=1e-4)
        count += len(labels)
    return count


@pytest.mark.slow
@pytest.mark.parametrize("mirror", [False, True])
def test_batches_carry_their_own_labels_through_shuffling(labelled, mirror):
    dataset = make_dataset(labelled, 4, seed=3, mirror_augment=mirror, with_labels=True)
    assert dataset.element_spec[1].shape == (4, 2)
    assert assert_aligned(b for b, _ in zip(dataset, range(6))) == 24
    seen = [int(i) for _, labels in make_dataset(labelled, 3, seed=1, repeat=False, with_labels=True)
            for i in labels.numpy()[:, 1]]
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    plain = next(iter(make_dataset(labelled, 4, seed=3, mirror_augment=mirror)))
    first = next(iter(make_dataset(labelled, 4, seed=3, mirror_augment=mirror, with_labels=True)))
    np.testing.assert_array_equal(plain.numpy(), first[0].numpy())  # the same volumes as without labels


def test_labels_follow_their_volumes_into_input_pipelines(labelled):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        batches = list(make_dataset(labelled, 4, input_context=context, repeat=False, with_labels=True))
        assert_aligned(batches)
        seen += [int(i) for _, labels in batches for i in labels.numpy()[:, 1]]
    assert sorted(seen) == list(range(10))


def test_without_labels_file_with_labels_is_an_error(tmp_path):
    with RecordWriter(tmp_path / "plain", 4) as writer:
        writer.write(np.zeros(SHAPE, np.float32))
    assert dataset_info(tmp_path / "plain").label_size == 0 and read_labels(tmp_path / "plain") == (None, None)
    with pytest.raises(DataError, match="has no labels"):
        make_dataset(tmp_path / "plain", 1, with_labels=True)
    write_labels(tmp_path / "plain", np.zeros((2, 1)))
    with pytest.raises(DataError, match="labels file has 2 rows but the records hold 1"):
        dataset_info(tmp_path / "plain")
