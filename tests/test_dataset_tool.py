"""dataset_tool.py and its API: create-from-images3d, bad inputs, --skip-bad, split, labels, info --verify."""
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tf3dstylegan import cli
from tf3dstylegan.commands.dataset import normalize_argv
from tf3dstylegan.data import DataError, create_from_images3d, split_folder
from tf3dstylegan.data.records import dataset_info, read_volumes

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (12, 16, 20)
BASE = (3, 4, 5)


def make_inputs(folder, n=4, seed=0, shape=SHAPE):
    folder.mkdir(parents=True, exist_ok=True)
    volumes = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    for i, volume in enumerate(volumes):
        if i % 2:
            np.savez(folder / f"s{i}.npz", vol_data=volume)
        else:
            nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / f"s{i}.nii.gz"))
    return volumes


def bad_file(folder, kind):
    """Add one bad input of a kind to folder; returns its path."""
    good = np.random.default_rng(9).random(SHAPE, dtype=np.float32)
    path = folder / {"truncated": "bad.nii.gz", "non_image": "bad.txt", "dims": "bad.nii",
                     "channels": "bad.nii", "nan": "bad.npz", "inf": "bad.nii", "base_size": "bad.nii",
                     "mismatch": "zz_bad.nii"}[kind]
    if kind == "truncated":
        nib.save(nib.Nifti1Image(good, np.eye(4)), str(path))
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "non_image":
        path.write_text("not a volume")
    elif kind == "nan":
        good[0, 0, 0] = np.nan
        np.savez(path, vol_data=good)
    else:
        data = {"dims": good[0], "channels": np.stack([good, good], -1), "inf": np.where(good > 0.5, np.inf, 0),
                "base_size": good[:, :, :7], "mismatch": np.zeros((24, 32, 40))}[kind]
        nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), str(path))
    return path


BAD_KINDS = ["truncated", "non_image", "dims", "channels", "nan", "inf", "base_size", "mismatch"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_stops_with_one_line_error_and_no_records(tmp_path, kind):
    make_inputs(tmp_path / "in")
    path = bad_file(tmp_path / "in", kind)
    with pytest.raises(DataError) as err:
        create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE, shuffle=False)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert not list(tmp_path.glob("out/*.tfrecords*"))


@pytest.mark.parametrize("kind", ["truncated", "channels", "mismatch"])
def test_skip_bad_reports_and_keeps_the_rest(tmp_path, kind):
    volumes = make_inputs(tmp_path / "in")
    path = bad_file(tmp_path / "in", kind)
    summary = create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE, skip_bad=True, shuffle=False)
    assert len(summary["skipped"]) == 1 and summary["skipped"][0].startswith(f"{path}: ")
    np.testing.assert_array_equal(np.stack(list(read_volumes(tmp_path / "out")))[..., 0], volumes)


def test_empty_folder_and_only_bad_files(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(DataError, match="empty folder") as err:
        create_from_images3d(tmp_path / "out", tmp_path / "in")
    assert str(err.value).startswith(str(tmp_path / "in"))
    bad_file(tmp_path / "in", "non_image")
    with pytest.raises(DataError, match="no usable volumes"):
        create_from_images3d(tmp_path / "out", tmp_path / "in", skip_bad=True)


def test_stores_volumes_in_the_original_shuffled_order(tmp_path):
    volumes = make_inputs(tmp_path / "in", n=7)
    create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE)
    order = np.arange(7)
    np.random.RandomState(123).shuffle(order)  # the original's order over the sorted file list
    np.testing.assert_array_equal(np.stack(list(read_volumes(tmp_path / "out")))[..., 0], volumes[order])


def test_resampling_and_normalisation(tmp_path):
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(2)
    for i, shape in enumerate([(24, 32, 40), (30, 30, 30)]):  # 1 mm scans of different shapes
        volume = rng.uniform(100.0, 900.0, shape).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "in" / f"s{i}.nii"))
    summary = create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE, voxel_size=2.0,
                                   img_shape=SHAPE, normalize="minmax")
    assert summary["img_shape"] == list(SHAPE) and summary["value_range"] == [0.0, 1.0]
    assert summary["input_range"][1] > 800.0 and summary["num_clipped"] == 0
    assert dataset_info(tmp_path / "out").num_volumes == 2


def test_refuses_to_mix_with_existing_records(tmp_path):
    make_inputs(tmp_path / "in", n=2)
    create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE)
    with pytest.raises(DataError, match="already holds"):
        create_from_images3d(tmp_path / "out", tmp_path / "in", base_size=BASE)


@pytest.mark.slow
def test_workers_give_the_same_records_as_one_process(tmp_path):
    make_inputs(tmp_path / "in", n=6)
    bad_file(tmp_path / "in", "nan")
    one = create_from_images3d(tmp_path / "a", tmp_path / "in", base_size=BASE, skip_bad=True)
    two = create_from_images3d(tmp_path / "b", tmp_path / "in", base_size=BASE, skip_bad=True, workers=2)
    assert len(one["skipped"]) == len(two["skipped"]) == 1
    for a, b in zip(read_volumes(tmp_path / "a"), read_volumes(tmp_path / "b"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_is_seeded_without_replacement_with_absolute_links(tmp_path, monkeypatch):
    make_inputs(tmp_path / "scans", n=20)
    monkeypatch.chdir(tmp_path)  # a relative folder still gives absolute links
    train, valid = split_folder("scans", valid_fraction=0.2, seed=5)
    assert len(valid) == 4 and len(set(valid)) == 4 and not set(train) & set(valid)
    assert sorted(train + valid) == sorted(p.name for p in (tmp_path / "scans").iterdir())
    link = tmp_path / "scans_valid" / valid[0]
    assert link.is_symlink() and Path(os.readlink(link)).is_absolute() and link.exists()
    again = split_folder(tmp_path / "scans", seed=5, valid_fraction=0.2, copy=True,
                         train_dir=tmp_path / "t2", valid_dir=tmp_path / "v2")
    assert again == (train, valid)
    assert not (tmp_path / "v2" / valid[0]).is_symlink()
    other = split_folder(tmp_path / "scans", seed=6, valid_fraction=0.2,
                         train_dir=tmp_path / "t3", valid_dir=tmp_path / "v3")
    assert other[1] != valid
    with pytest.raises(DataError, match="already exists"):
        split_folder(tmp_path / "scans", seed=5)


def test_argv_accepts_original_and_dashed_spellings():
    assert normalize_argv(["t", "create_from_images3d", "o", "i", "--base_size", "5", "6", "7", "--shuffle", "0"]) \
        == ["t", "create_from_images3d", "o", "i", "--base_size=5,6,7", "--noshuffle"]
    assert normalize_argv(["t", "--base-size=3,4,5", "--voxel-size", "2", "--shape", "80", "96", "112", "x"]) \
        == ["t", "--base-size=3,4,5", "--voxel-size", "2", "--shape=80,96,112", "x"]
    assert normalize_argv(["t", "demo", "--labels"]) == ["t", "demo", "--labels=demo"]
    assert normalize_argv(["t", "demo", "--labels", "--seed", "1"]) == ["t", "demo", "--labels=demo", "--seed", "1"]


def run_in_process(capsys, *argv):
    code = cli.run("tf3dstylegan.commands.dataset", normalize_argv(["dataset_tool.py", *map(str, argv)]))
    return code, capsys.readouterr()


def test_command_creates_labels_and_verifies(tmp_path, capsys):
    make_inputs(tmp_path / "in", n=4)
    table = tmp_path / "participants.csv"
    table.write_text("participant_id,age,group\ns0,60,a\ns1,70,b\ns2,80,a\ns3,90,b\n")
    code, out = run_in_process(capsys, "create_from_images3d", tmp_path / "out", tmp_path / "in", "--base-size", 3, 4,
                               5, "--labels", table, "--shards", 2)
    assert code == 0, out.err
    assert "wrote 4 volumes" in out.out and "labels: 3 values per volume from age (mean 75" in out.out
    assert "4/4" in out.out  # the keras progress bar
    code, out = run_in_process(capsys, "info", tmp_path / "out", "--verify")
    assert code == 0 and out.out.startswith("4 volumes of shape (12, 16, 20)")
    assert "labels: 3 values per volume (age, group)" in out.out and "verified 4 records in 2 file(s)" in out.out


def test_command_builds_the_conditional_demo(tmp_path, capsys):
    code, out = run_in_process(capsys, "demo", "--labels", "--voxel-size", 4, "--num-subjects", 2,
                               "--cache-dir", tmp_path)
    assert code == 0, out.err
    path = Path(out.out.strip())
    assert path.parent == tmp_path and "conditional" in path.name
    assert {"participants.tsv", "labels.json", f"{path.name}-rxx.labels"} <= {p.name for p in path.iterdir()}


def run_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "dataset_tool.py"), *map(str, args)],
                          capture_output=True, text=True, check=False, cwd=ROOT)


@pytest.mark.slow
def test_cli_error_exit_and_skip_bad(tmp_path):
    make_inputs(tmp_path / "in", n=3)
    path = bad_file(tmp_path / "in", "nan")
    failed = run_tool("create-from-images3d", tmp_path / "out", tmp_path / "in", "--base-size", 3, 4, 5)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"dataset_tool.py: error: {path}: contains 1 NaN or Inf values"]
    assert "Traceback" not in failed.stderr and not (tmp_path / "out").exists()
    done = run_tool("create-from-images3d", tmp_path / "out", tmp_path / "in", "--base-size", 3, 4, 5,
                    "--skip-bad", "--shards", 2)
    assert done.returncode == 0, done.stderr
    assert "wrote 3 volumes" in done.stdout and f"{path}: contains" in done.stdout
    info = run_tool("info", tmp_path / "out")
    assert info.returncode == 0 and info.stdout.startswith("3 volumes of shape (12, 16, 20)")
