"""The dataset tools, the demo data, make_batches and TensorBoard files in a process where `import tensorflow`
fails (as on machines without TensorFlow): a meta-path finder refuses it."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from backends import requires

REPO = Path(__file__).resolve().parent.parent
BLOCK = textwrap.dedent("""
    import json, os, sys
    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorboard"):
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, NoTensorFlow())
    from tf3dstylegan import cli
    from tf3dstylegan.commands.dataset import normalize_argv
    def tool(*argv):
        code = cli.run("tf3dstylegan.commands.dataset", normalize_argv(["dataset_tool.py", *argv]))
        assert code == 0, argv
""")
DONE = "\nprint(json.dumps({'tensorflow_loaded': 'tensorflow' in sys.modules, **report}))\n"


def run_without_tensorflow(body, tmp_path, **env):
    result = subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(body) + DONE], capture_output=True,
                            text=True, check=False, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                                       "TF3DSTYLEGAN_CACHE": str(tmp_path / "cache"),
                                                                       "PYTHONPATH": str(REPO), **env})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("tensorflow_loaded") is False
    return report, result


def nifti_inputs(folder, n=4):
    import nibabel as nib
    folder.mkdir()
    volumes = np.random.default_rng(0).random((n, 12, 16, 20), dtype=np.float32)
    for i, volume in enumerate(volumes):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / f"sub-{i:02d}.nii.gz"))
    (folder / "participants.tsv").write_text("participant_id\tage\n" + "".join(f"sub-{i:02d}\t{50 + i}\n"
                                                                              for i in range(n)))
    return volumes


@pytest.mark.slow
def test_records_batches_events_split_and_info_run_without_tensorflow(tmp_path):
    volumes = np.random.default_rng(1).random((5, 12, 16, 20), dtype=np.float32)
    np.save(tmp_path / "volumes.npy", volumes)
    report, _ = run_without_tensorflow("""
        import numpy as np
        from tf3dstylegan.data import dataset_info, make_batches, read_volumes, verify_records
        from tf3dstylegan.data.records import RecordWriter
        from tf3dstylegan.io import encode_png
        from tf3dstylegan.io.events import EventFileWriter
        volumes = np.load("volumes.npy")
        with RecordWriter("rec", 4, num_shards=2) as writer:
            for volume in volumes:
                writer.write(volume)
        with make_batches("rec", 2, shuffle=False, repeat=False) as batches:
            batch_sums = [float(b.sum()) for b in batches]
        events = EventFileWriter(".")
        events.add_scalars({"loss": 0.5}, 1)
        events.add_image("preview", encode_png(np.zeros((4, 4), np.uint8)), 1)
        events.close()
        tool("info", "rec")
        os.makedirs("split_in")
        for i in range(4):
            open(f"split_in/s{i}.nii.gz", "wb").close()
        tool("split", "split_in", "--valid_fraction", "0.5")
        report = {"num_volumes": dataset_info("rec").num_volumes, "verified": verify_records("rec")["records"],
                  "read": [float(v.sum()) for v in read_volumes("rec")], "batch_sums": batch_sums,
                  "split": sorted(os.listdir("split_in_valid"))}
    """, tmp_path)
    assert report["num_volumes"] == report["verified"] == 5
    # two shards, read one after the other: records 0, 2, 4 then 1, 3
    np.testing.assert_allclose(report["read"], volumes[[0, 2, 4, 1, 3]].sum(axis=(1, 2, 3)), rtol=1e-6)
    assert len(report["batch_sums"]) == 3 and len(report["split"]) == 2
    assert list(tmp_path.glob("events.out.tfevents.*"))


@pytest.mark.slow
@requires("jax")  # the environment it stands for: JAX without TensorFlow
def test_dataset_tool_and_the_demo_data_run_without_tensorflow(tmp_path):
    volumes = nifti_inputs(tmp_path / "in")
    report, result = run_without_tensorflow("""
        from tf3dstylegan.data import dataset_info, demo_dataset, read_volumes
        tool("create-from-images3d", "out", "in", "--base_size", "3,4,5", "--noshuffle",
             "--labels", "in/participants.tsv")
        tool("info", "out", "--verify")
        tool("demo", "--voxel_size", "4", "--num_subjects", "2", "--cache_dir", "demo_cache")
        demo = demo_dataset(voxel_size=4, num_subjects=2, cache_dir="demo_cache")  # the cached folder
        report = {"created": [float(v.sum()) for v in read_volumes("out")], "labels": dataset_info("out").label_size,
                  "demo": [list(v.shape) for v in read_volumes(demo)]}
    """, tmp_path, KERAS_BACKEND="jax")
    np.testing.assert_allclose(report["created"], volumes.sum(axis=(1, 2, 3)), rtol=1e-6)
    assert report["labels"] == 1 and report["demo"] == [[40, 48, 56, 1]] * 2
    assert "verified 4 records" in result.stdout and "mni152-demo" in result.stdout
