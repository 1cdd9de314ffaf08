"""make_dataset: round trip, shuffling, mirror augment, sharding, tf.distribute and bad records."""
import json
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.data import create_from_images3d, make_dataset
from tf3dstylegan.data.pipeline import bad_record_message
from tf3dstylegan.data.records import RecordWriter, serialize_volume

SHAPE = (12, 16, 20)


@pytest.fixture(name="volumes")
def fixture_volumes():
    return np.random.default_rng(0).random((10, *SHAPE), dtype=np.float32)


@pytest.fixture(name="records")
def fixture_records(tmp_path, volumes):
    with RecordWriter(tmp_path / "data", 4) as writer:
        for volume in volumes:
            writer.write(volume)
    return tmp_path / "data"


def ids(batch):
    """Identify volumes by their sums (distinct for random data); [B] floats."""
    return [round(float(v), 2) for v in tf.reduce_sum(batch, axis=[1, 2, 3, 4]).numpy()]


def test_round_trip_nifti_to_records_to_batches(tmp_path, volumes):
    (tmp_path / "in").mkdir()
    for i, volume in enumerate(volumes[:4]):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "in" / f"s{i}.nii.gz"))
    summary = create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=(3, 4, 5), shuffle=False)
    assert summary["num_volumes"] == 4 and summary["img_shape"] == list(SHAPE)
    batches = list(make_dataset(tmp_path / "out", 3, shuffle=False, repeat=False).as_numpy_iterator())
    assert [b.shape for b in batches] == [(3, *SHAPE, 1), (1, *SHAPE, 1)]
    assert all(b.dtype == np.float32 for b in batches)
    np.testing.assert_allclose(np.concatenate(batches)[..., 0], volumes[:4] * 2 - 1, atol=1e-6)


def test_repeating_batches_are_full_and_static(records):
    dataset = make_dataset(records, 4)
    assert dataset.element_spec.shape == (4, *SHAPE, 1)
    first = [b for b, _ in zip(dataset, range(4))]
    assert all(b.shape == (4, *SHAPE, 1) for b in first)
    assert -1.0 <= float(tf.reduce_min(first[0])) and float(tf.reduce_max(first[0])) <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("cache_mb", [0, 1024])
def test_shuffle_is_seeded_and_covers_each_epoch(records, volumes, cache_mb):
    def order(seed):
        return sum((ids(b) for b in make_dataset(records, 5, seed=seed, repeat=False, cache_mb=cache_mb)), [])

    expected = sorted(round(float(v), 2) for v in (volumes * 2 - 1).sum(axis=(1, 2, 3)))
    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == expected


def test_mirror_augment_flips_axis_x_per_sample(records, volumes):
    plain = {round(float(v.sum()), 2): v for v in volumes * 2 - 1}
    flipped = 0
    dataset = make_dataset(records, 5, seed=3, shuffle=False, mirror_augment=True)
    again = make_dataset(records, 5, seed=3, shuffle=False, mirror_augment=True)
    for batch, batch_again, _ in zip(dataset, again, range(4)):
        np.testing.assert_array_equal(batch.numpy(), batch_again.numpy())
        for volume in batch.numpy()[..., 0]:
            source = plain[round(float(volume.sum()), 2)]
            is_flipped = np.array_equal(volume, source[::-1]) and not np.array_equal(volume, source)
            assert is_flipped or np.array_equal(volume, source)
            flipped += is_flipped
    assert 0 < flipped < 20


@pytest.mark.parametrize("num_shards", [1, 3])
def test_input_pipelines_read_disjoint_shards(tmp_path, volumes, num_shards):
    with RecordWriter(tmp_path, 4, num_shards=num_shards) as writer:
        for volume in volumes:
            writer.write(volume)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        dataset = make_dataset(tmp_path, 4, input_context=context, repeat=False)
        batches = list(dataset)
        assert all(b.shape[0] <= 2 for b in batches)  # per-replica batch of a global 4
        seen.append(sum((ids(b) for b in batches), []))
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == len(volumes)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(records):
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tf3dstylegan.data import make_dataset
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: make_dataset({str(records)!r}, 4, seed=0, input_context=ctx))
        batch = next(iter(dist))
        shapes = [list(t.shape) for t in strategy.experimental_local_results(batch)]
        total = strategy.reduce("SUM", strategy.run(lambda x: tf.reduce_sum(tf.ones_like(x[:, 0, 0, 0, 0])),
                                                    args=(batch,)), axis=None)
        print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "shapes": shapes, "total": float(total)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["shapes"] == [[2, *SHAPE, 1]] * 2
    assert report["total"] == 4.0


def test_several_channels_come_out_channels_last(tmp_path):
    volumes = np.random.default_rng(5).random((2, *SHAPE, 2), dtype=np.float32)  # [N, X, Y, Z, C]
    with RecordWriter(tmp_path, 4) as writer:
        for volume in volumes:
            writer.write(volume)
    batch = next(iter(make_dataset(tmp_path, 2, shuffle=False, repeat=False)))
    np.testing.assert_allclose(batch.numpy(), volumes * 2 - 1, atol=1e-6)


def test_bad_records_met_while_training_are_named(tmp_path, records):
    file = next(records.glob("*.tfrecords"))
    with tf.io.TFRecordWriter(str(tmp_path / "extra")) as writer:
        writer.write(serialize_volume(np.zeros((1, 6, 8, 10))))
    file.write_bytes(file.read_bytes() + (tmp_path / "extra").read_bytes())
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        for _ in make_dataset(records, 4, shuffle=False, repeat=False):
            pass
    assert bad_record_message(err.value, records).startswith(f"{file}: a record of shape [1 6 8 10]")
    data = bytearray(file.read_bytes())
    data[100] ^= 0xFF  # inside the first record's payload
    file.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError) as err:
        for _ in make_dataset(records, 4, shuffle=False, repeat=False):
            pass
    assert bad_record_message(err.value, records).startswith(f"{records}: a record file is corrupt (corrupted record")
    assert bad_record_message(ValueError("other"), records) is None


def test_derived_seeds_are_deterministic_and_do_not_collide_like_sums():
    from tf3dstylegan.data.pipeline import derived_seed
    assert derived_seed(0, 1) == derived_seed(0, 1)
    assert derived_seed(0, 1) != derived_seed(1, 0)           # seed + step would give 1 for both
    seeds = {derived_seed(seed, step) for seed in range(20) for step in range(0, 2000, 100)}
    assert len(seeds) == 400 and all(0 <= s < 2 ** 32 for s in seeds)
