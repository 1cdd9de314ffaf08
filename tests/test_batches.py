"""make_batches (NumPy, no TensorFlow): the batches of make_dataset, shuffling, mirroring, cache, shards, labels,
bad records and its reader thread."""
import threading

import numpy as np
import pytest

from tf3dstylegan.data import make_dataset
from tf3dstylegan.data.batches import make_batches
from tf3dstylegan.data.labels import write_labels
from tf3dstylegan.data.records import RecordWriter, _record_spans, dataset_info, serialize_volume
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.io.tfrecord import write_record

SHAPE = (12, 16, 20)


@pytest.fixture(name="volumes")
def fixture_volumes():
    return np.random.default_rng(0).random((10, *SHAPE), dtype=np.float32)


def write_records(folder, volumes, num_shards=1):
    with RecordWriter(folder, 4, num_shards=num_shards) as writer:
        for volume in volumes:
            writer.write(volume)
    return folder


@pytest.fixture(name="records")
def fixture_records(tmp_path, volumes):
    return write_records(tmp_path / "data", volumes)


def ids(batch):
    """Volumes identified by their sums (distinct for random data)."""
    return [round(float(v), 2) for v in np.asarray(batch, np.float64).sum(axis=(1, 2, 3, 4))]


def take(batches, n):
    with batches:
        return [next(batches) for _ in range(n)]


@pytest.mark.parametrize("num_shards", [1, 3])
def test_unshuffled_batches_equal_tf_datas(tmp_path, volumes, num_shards):
    folder = write_records(tmp_path / "data", volumes, num_shards)
    with make_batches(folder, 4, shuffle=False, repeat=False) as batches:
        ours = list(batches)
    theirs = list(make_dataset(folder, 4, shuffle=False, repeat=False).as_numpy_iterator())
    assert [b.shape for b in ours] == [(4, *SHAPE, 1), (4, *SHAPE, 1), (2, *SHAPE, 1)]
    assert all(b.dtype == np.float32 for b in ours)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)  # the same float32 ops: x * 2 - 1


def test_an_info_already_read_is_not_read_again(records, monkeypatch):
    import tf3dstylegan.data.batches
    import tf3dstylegan.data.pipeline
    info = dataset_info(records)

    def read_again(path):
        raise AssertionError(f"{path} read again")

    for module in (tf3dstylegan.data.batches, tf3dstylegan.data.pipeline):
        monkeypatch.setattr(module, "dataset_info", read_again)
    with make_batches(records, 4, shuffle=False, repeat=False, info=info) as batches:
        ours = list(batches)
    theirs = list(make_dataset(records, 4, shuffle=False, repeat=False, info=info).as_numpy_iterator())
    assert [b.shape for b in ours] == [b.shape for b in theirs] == [(4, *SHAPE, 1), (4, *SHAPE, 1), (2, *SHAPE, 1)]


def test_repeating_batches_are_full(records):
    batches = make_batches(records, 4)
    assert batches.element_shape == (4, *SHAPE, 1)
    got = take(batches, 6)  # 24 volumes: across epoch boundaries
    assert all(b.shape == (4, *SHAPE, 1) for b in got)
    assert all(-1.0 <= b.min() and b.max() <= 1.0 for b in got)


@pytest.mark.parametrize("cache_mb", [0, 1024])
def test_shuffle_is_seeded_and_every_epoch_is_a_permutation(records, volumes, cache_mb):
    def stream(seed):
        return sum((ids(b) for b in take(make_batches(records, 5, seed=seed, cache_mb=cache_mb), 6)), [])

    expected = sorted(ids((volumes * 2 - 1)[..., None]))
    first = stream(1)
    assert first == stream(1) and first != stream(2)
    assert sorted(first[:10]) == sorted(first[10:20]) == sorted(first[20:]) == expected
    assert first[:10] != first[10:20]  # a new order each epoch


def test_cached_and_file_batches_are_identical(records):
    for cached, read in zip(take(make_batches(records, 3, seed=4, mirror_augment=True), 8),
                            take(make_batches(records, 3, seed=4, mirror_augment=True, cache_mb=0), 8)):
        np.testing.assert_array_equal(cached, read)


def test_mirror_flips_x_per_volume_from_its_own_stream(records, volumes):
    plain = volumes * np.float32(2) - np.float32(1)

    def flips(batch_size, num_batches):
        pattern = []
        for batch in take(make_batches(records, batch_size, seed=3, shuffle=False, mirror_augment=True), num_batches):
            for volume in batch[..., 0]:
                as_is = [np.array_equal(volume, v) for v in plain]
                flipped = [np.array_equal(volume, v[::-1]) for v in plain]
                assert sum(as_is) + sum(flipped) == 1  # exactly one source, as it is or flipped along X
                pattern.append(any(flipped))
        return pattern

    assert 0 < sum(flips(5, 4)) < 20
    assert flips(5, 4) == flips(5, 4) == flips(2, 10)  # one coin per volume of the stream, whatever the batch size


@pytest.mark.parametrize("num_shards", [1, 3])
def test_processes_read_disjoint_shards_with_their_labels(tmp_path, volumes, num_shards):
    folder = write_records(tmp_path / "data", volumes, num_shards)
    write_labels(folder, np.stack([(volumes * 2 - 1).sum(axis=(1, 2, 3)), np.arange(10)], 1))
    seen = []
    for process in range(2):
        with make_batches(folder, 4, seed=5, repeat=False, mirror_augment=True, process_index=process,
                          process_count=2, with_labels=True) as batches:
            for batch, labels in batches:
                assert batch.shape[0] == labels.shape[0] <= 2 and labels.dtype == np.float32
                np.testing.assert_allclose(batch.sum(axis=(1, 2, 3, 4)), labels[:, 0], rtol=1e-4)
                seen.append([int(i) for i in labels[:, 1]])
    rows = sum(seen, [])
    assert sorted(rows) == list(range(10))
    assert all(i % 2 == 0 for i in sum(seen[:len(seen) // 2], []))  # volume i goes to process i % 2


def test_several_channels_come_out_channels_last(tmp_path):
    volumes = np.random.default_rng(5).random((2, *SHAPE, 2), dtype=np.float32)
    folder = write_records(tmp_path / "data", volumes)
    with make_batches(folder, 2, shuffle=False, repeat=False) as batches:
        np.testing.assert_array_equal(next(batches), volumes * np.float32(2) - np.float32(1))


def append(file, payload):
    with open(file, "ab") as f:
        write_record(f, payload)


@pytest.mark.parametrize("cache_mb", [0, 1024])
def test_bad_records_name_their_file_and_index(records, cache_mb):
    file = next(records.glob("*.tfrecords"))
    append(file, serialize_volume(np.zeros((1, 6, 8, 10))))
    with pytest.raises(DataError) as err:
        list(make_batches(records, 4, shuffle=False, repeat=False, cache_mb=cache_mb))
    assert str(err.value).startswith(f"{file}: record 10: a record of shape [1, 6, 8, 10] with 1920 payload bytes "
                                     "does not fit the dataset's [1, 12, 16, 20]; find it with: dataset_tool.py info")
    offset, length = list(_record_spans(file))[3]
    data = bytearray(file.read_bytes())
    data[offset + length // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"^{file}: record 3: corrupt \\(data CRC mismatch, record at byte"):
        list(make_batches(records, 4, shuffle=False, repeat=False, cache_mb=cache_mb))
    file.write_bytes(file.read_bytes()[:-7])
    with pytest.raises(DataError, match=f"^{file}: truncated record file"):
        make_batches(records, 4)  # from the headers, before any batch


def test_not_an_example_is_named(records):
    file = next(records.glob("*.tfrecords"))
    append(file, b"\x0a\x05\x0a")
    with pytest.raises(DataError, match=f"^{file}: record 10: not a tf.train.Example"):
        list(make_batches(records, 4, shuffle=False, repeat=False))


def test_close_stops_the_reader_threads_and_an_epoch_ends_for_good(records):
    before = set(threading.enumerate())
    batches = make_batches(records, 2, read_ahead=1)
    next(batches)
    started = set(threading.enumerate()) - before
    batches.close()
    assert started and not any(t.is_alive() for t in started)
    batches = make_batches(records, 20, repeat=False)
    assert next(batches).shape[0] == 10
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(batches)


def test_bad_arguments(records):
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        make_batches(records, 4, process_count=3)
    with pytest.raises(ValueError, match="process index 2"):
        make_batches(records, 4, process_index=2, process_count=2)
    with pytest.raises(DataError, match="fewer than the 16 processes"):
        make_batches(records, 16, process_index=0, process_count=16)
    with pytest.raises(DataError, match="has no labels"):
        make_batches(records, 2, with_labels=True)
