"""Every bad input of the dataset command: one line naming the file or flag, exit 2, nothing written.

Each case builds its inputs under tmp_path and returns (arguments, expected start of the message);
the command runs in-process through tf3dstylegan.cli.run, as dataset_tool.py runs it.
"""
import gzip
import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import cli
from tf3dstylegan.commands.dataset import normalize_argv
from tf3dstylegan.data.labels import write_labels
from tf3dstylegan.data.records import RecordWriter, _record_spans, serialize_volume

SHAPE = (12, 16, 20)
PREFIX = "dataset_tool.py: error: "


def volumes_in(tmp, n=3):
    """tmp/in with n NIfTI volumes sub-XX_T1w.nii.gz; returns the folder."""
    folder = tmp / "in"
    folder.mkdir(exist_ok=True)
    for i, volume in enumerate(np.random.default_rng(0).random((n, *SHAPE), dtype=np.float32)):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / f"sub-{i:02d}_T1w.nii.gz"))
    return folder


def create(tmp, *extra, n=3):
    return ["create-from-images3d", str(tmp / "out"), str(volumes_in(tmp, n)), "--base_size", "3", "4", "5", *extra]


def table_case(text, *flags, name="p.tsv"):
    """A create run with a covariate table holding `text`; expected is formatted with {table} and {in}."""
    def case(tmp):
        path = tmp / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        return create(tmp, "--labels", str(path), *flags), {"table": path, "in": tmp / "in"}
    return case


def nifti_bomb(tmp):
    """A tiny .nii.gz whose header claims a 1024^3 float32 volume (4 GiB)."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    path = volumes_in(tmp) / "sub-09_bomb.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 4096))
    return create(tmp), {"file": path}


def npz_with(member, header, payload=b"\0" * 64):
    """An .npz whose `member`.npy has this .npy header dict (and vol_data a valid 12x16x20 volume)."""
    def case(tmp):
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        path = volumes_in(tmp) / "sub-09_x.npz"
        with zipfile.ZipFile(path, "w") as archive:
            if member != "vol_data":
                archive.writestr("vol_data.npy", _npy(np.zeros(SHAPE, np.float32)))
            archive.writestr(f"{member}.npy", buffer.getvalue() + payload)
        return create(tmp), {"file": path}
    return case


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def nan_affine(tmp):
    path = volumes_in(tmp) / "sub-09_nan.npz"
    affine = np.eye(4)
    affine[0, 0] = np.nan
    np.savez(path, vol_data=np.ones((10, 10, 10), np.float32), affine=affine)
    return create(tmp, "--voxel_size", "2", "--shape", "12,16,20"), {"file": path}


def records(tmp, n=2, shards=1):
    """tmp/rec: n records of SHAPE written by the tool."""
    with RecordWriter(tmp / "rec", 4, num_shards=shards) as writer:
        for volume in np.random.default_rng(0).random((n, *SHAPE), dtype=np.float32):
            writer.write(volume)
    return tmp / "rec"


def record_case(edit, *flags):
    """info on tmp/rec after edit(file) changed its record file."""
    def case(tmp):
        folder = records(tmp)
        file = next(folder.glob("*.tfrecords"))
        edit(file)
        return ["info", str(folder), *flags], {"file": file, "rec": folder}
    return case


def flip_payload_byte(file):
    data = bytearray(file.read_bytes())
    offset, length = list(_record_spans(file))[1]
    data[offset + length // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def append_record(serialized):
    def edit(file):
        with tf.io.TFRecordWriter(str(file) + ".more") as writer:
            writer.write(serialized)
        file.write_bytes(file.read_bytes() + Path(str(file) + ".more").read_bytes())
        Path(str(file) + ".more").unlink()
    return edit


def short_payload():
    example = tf.train.Example(features=tf.train.Features(feature={
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, *SHAPE])),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\0" * 100]))}))
    return example.SerializeToString()


def labels_case(write):
    """info on a records folder with a labels file written by write(folder)."""
    def case(tmp):
        folder = records(tmp)
        write(folder)
        return ["info", str(folder)], {"rec": folder}
    return case


def npy_header_only(folder):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 10)})
    (folder / "rec-rxx.labels").write_bytes(buffer.getvalue() + b"\0" * 64)


def outdir_case(make, expected):
    def case(tmp):
        target = make(tmp)
        return ["create-from-images3d", str(target), str(volumes_in(tmp)), "--base_size", "3,4,5"], \
            {"expected": expected, "out": target, "in": tmp / "in"}
    return case


def existing_records(tmp):
    records(tmp)
    return tmp / "rec"


def plain(*argv):
    return lambda tmp: ([a.format(tmp=tmp) for a in argv], {})


HEADER = "participant_id\tage\tsex\n"
ROWS = "sub-00\t61\tF\nsub-01\t72\tM\nsub-02\t55\tF\n"
CASES = {
    "file without a row": (table_case(HEADER + "sub-00\t61\tF\nsub-01\t72\tM\n"),
                           "{in}/sub-02_T1w.nii.gz: no row of {table} matches"),
    "empty cell": (table_case(HEADER + "sub-00\t61\tF\nsub-01\t\tM\nsub-02\t55\tF\n"),
                   "{table}, line 3 (id 'sub-01'): missing value in column 'age'"),
    "n/a cell": (table_case(HEADER + "sub-00\tn/a\tF\nsub-01\t72\tM\nsub-02\t55\tF\n"),
                 "{table}, line 2 (id 'sub-00'): missing value in column 'age'"),
    "unknown category": (table_case(HEADER + "sub-00\t61\tF\nsub-01\t72\tX\nsub-02\t55\tF\n", "--categorical",
                                    "sex=F|M"), "{table}, line 3 (id 'sub-01'): unknown category 'X' in column 'sex'"),
    "non-numeric in continuous": (table_case(HEADER + "sub-00\t61\tF\nsub-01\t7o\tM\nsub-02\t55\tF\n"),
                                  "{table}, line 3 (id 'sub-01'): non-numeric value '7o' in continuous column"),
    "infinite number": (table_case(HEADER + "sub-00\t61\tF\nsub-01\tinf\tM\nsub-02\t55\tF\n"),
                        "{table}, line 3 (id 'sub-01'): non-numeric value 'inf'"),
    "duplicate id": (table_case(HEADER + ROWS + "sub-01\t80\tF\n"), "{table}: line 5: duplicate id 'sub-01' "
                                                                   "(first on line 3)"),
    "ragged row": (table_case(HEADER + "sub-00\t61\nsub-01\t72\tM\nsub-02\t55\tF\n"), "{table}: line 2: 2 fields"),
    "header only": (table_case(HEADER), "{table}: has a header but no rows"),
    "empty table": (table_case(""), "{table}: empty covariate table"),
    "binary table": (table_case(b"\xff\xfe\x00\x01garbage"), "{table}: not UTF-8 text"),
    "csv with tabs": (table_case(HEADER + ROWS, name="p.csv"), "{table}: needs an id column"),
    "ambiguous rows": (table_case(HEADER + "sub-00\t61\tF\nT1w\t72\tM\nsub-01\t1\tF\nsub-02\t2\tF\n",
                                  "--noshuffle"),
                       "{in}/sub-00_T1w.nii.gz: matches several rows"),
    "unknown label column": (table_case(HEADER + ROWS, "--label_columns", "age,weight"),
                             "--label_columns: no covariate column 'weight'"),
    "categorical not chosen": (table_case(HEADER + ROWS, "--label_columns", "age", "--categorical", "sex"),
                               "--categorical: sex not among the chosen --label_columns"),
    "bad categorical flag": (table_case(HEADER + ROWS, "--categorical", "sex=F|F"), "--categorical: expected NAME"),
    "missing table": (lambda tmp: (create(tmp, "--labels", str(tmp / "absent.tsv")), {"table": tmp / "absent.tsv"}),
                      "{table}: cannot read the covariate table"),
    "columns without table": (lambda tmp: (create(tmp, "--label_columns", "age"), {}),
                              "--label_columns/--categorical: need a covariate table"),
    "demo table in create": (lambda tmp: (create(tmp, "--labels", "demo"), {}), "--labels: 'demo' is for the demo"),
    "nifti claiming 4 GiB": (nifti_bomb, "{file}: header claims shape 1024x1024x1024 = 1073741824 voxels (4.0 GiB"),
    "npz claiming 32 GiB": (npz_with("vol_data", {"descr": "<f4", "fortran_order": False, "shape": (2048,) * 3}),
                            "{file}: header claims shape 2048x2048x2048"),
    "npz of objects": (npz_with("vol_data", {"descr": "|O", "fortran_order": False, "shape": (2,)}),
                       "{file}: 'vol_data' has non-numeric dtype object"),
    "npz huge affine": (npz_with("affine", {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}),
                        "{file}: 'affine' must be a 4x4 array"),
    "nan affine": (nan_affine, "{file}: its affine is not finite or is singular"),
    "voxel size nan": (lambda tmp: (create(tmp, "--voxel_size", "nan", "--shape", "12,16,20"), {}),
                       "--voxel_size: must be a positive number"),
    "shape alone": (lambda tmp: (create(tmp, "--shape", "12,16,20"), {}), "--voxel_size/--shape: resampling needs"),
    "shape not fitting": (lambda tmp: (create(tmp, "--voxel_size", "2", "--shape", "12,16,21"), {}),
                          "--shape: image shape (12, 16, 21) does not fit"),
    "two base sizes": (lambda tmp: (create(tmp, "--base_size=3,4"), {}), "--base_size: expected three"),
    "shape not integers": (lambda tmp: (create(tmp, "--voxel_size", "2", "--shape", "a,b,c"), {}),
                           "--shape: expected integers"),
    "zero shards": (lambda tmp: (create(tmp, "--shards", "0"), {}), "--shards: must be >= 1"),
    "zero max voxels": (lambda tmp: (create(tmp, "--max_voxels", "0"), {}), "--max_voxels: must be >= 1"),
    "output is the input": (outdir_case(lambda tmp: tmp / "in", "is the input folder"), "{out}: {expected}"),
    "output is a file": (outdir_case(lambda tmp: (tmp / "f").write_text("x") and tmp / "f", "exists and is not a "
                                     "folder"), "{out}: {expected}"),
    "output under a file": (outdir_case(lambda tmp: (tmp / "f").write_text("x") and tmp / "f" / "out",
                                        "cannot be created"), "{out}: {expected}"),
    "output holds records": (outdir_case(existing_records, "already holds"), "{out}: {expected}"),
    "nan voxel": (lambda tmp: (create(tmp), {"file": _nan_volume(tmp)}), "{file}: contains 1 NaN or Inf values"),
    "unknown subcommand": (plain("convert", "x"), "expected a subcommand"),
    "missing argument": (plain("create-from-images3d", "{tmp}/out"), "create-from-images3d: expected 2 positional"),
    "flipped record byte": (record_case(flip_payload_byte, "--verify"), "{file}: record 1: corrupt"),
    "record of another shape": (record_case(append_record(serialize_volume(np.zeros((1, 6, 8, 10)))), "--verify",
                                            "--verify_sample", "10"), "{file}: record 2: shape [1, 6, 8, 10] differs"),
    "payload too short": (record_case(append_record(short_payload()), "--verify"),
                          "{file}: record 2: payload of 100 bytes does not fit"),
    "truncated record file": (record_case(lambda f: f.write_bytes(f.read_bytes()[:-10])),
                              "{file}: truncated record file"),
    "negative verify sample": (record_case(lambda f: None, "--verify", "--verify_sample", "-1"),
                               "--verify_sample: must be >= 0"),
    "labels of other length": (labels_case(lambda d: write_labels(d, np.zeros((3, 2)))),
                               "{rec}: its labels file has 3 rows but the records hold 2 volumes"),
    "labels not npy": (labels_case(lambda d: (d / "rec-rxx.labels").write_text("age\n1\n")),
                       "{rec}/rec-rxx.labels: not a labels file (.npy float32 [N, label_size]): no .npy header"),
    "labels claiming 40 GB": (labels_case(npy_header_only), "{rec}/rec-rxx.labels: not a labels file"),
    "labels with nan": (labels_case(lambda d: np.save(d / "rec-rxx.npy", np.full((2, 1), np.nan, np.float32))
                                    or os.replace(d / "rec-rxx.npy", d / "rec-rxx.labels")),
                        "{rec}/rec-rxx.labels: labels contain NaN"),
    "bad labels.json": (labels_case(lambda d: write_labels(d, np.zeros((2, 1))) and (d / "labels.json").write_text(
        '{"format": "tf3dstylegan-labels-v1", "covariates": [{"name": "a", "kind": "ordinal"}]}')),
        "{rec}/labels.json: not a label encoding"),
    "demo with a table": (plain("demo", "--labels", "p.tsv"), "--labels: the demo data takes --labels demo"),
    "demo without subjects": (plain("demo", "--num_subjects", "0", "--cache_dir", "{tmp}/c"),
                              "--num_subjects: must be >= 1"),
    "demo voxel size": (plain("demo", "--voxel_size", "3", "--cache_dir", "{tmp}/c"),
                        "--voxel_size: voxel size 3.0 mm does not"),
    "split fraction": (lambda tmp: (["split", str(volumes_in(tmp)), "--valid_fraction", "1.5"], {}),
                       "--valid_fraction: must be in (0, 1)"),
}


def _nan_volume(tmp):
    volume = np.ones(SHAPE, np.float32)
    volume[1, 2, 3] = np.nan
    path = volumes_in(tmp) / "sub-05_nan.npz"
    np.savez(path, vol_data=volume)
    return path


def snapshot(root):
    """Every path under root with its size and modification time."""
    return {str(p): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns) for p in root.rglob("*")}


def run_tool(argv):
    return cli.run("tf3dstylegan.commands.dataset", normalize_argv(["dataset_tool.py", *argv]))


def test_the_table_covers_enough_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    make, expected = CASES[name]
    argv, paths = make(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run_tool(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2
    assert len(lines) == 1 and lines[0].startswith(PREFIX + expected.format(**paths)), lines
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    with pytest.raises(SystemExit):
        run_tool(create(tmp_path)[:1] + [str(tmp_path / "ro" / "out")] + create(tmp_path)[2:])
    assert capsys.readouterr().err.startswith(f"{PREFIX}{tmp_path / 'ro' / 'out'}: cannot be written")


@pytest.mark.slow
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """A file size limit makes the records' write fail like a full disk."""
    argv = create(tmp_path, n=6)
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        sys.argv = ["dataset_tool.py", *{argv!r}]
        exec(open({str(Path(__file__).resolve().parent.parent / 'dataset_tool.py')!r}).read())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PREFIX}{tmp_path / 'out'}/out-r04.tfrecords: cannot write: "
                                                   "File too large"), lines
    assert not (tmp_path / "out").exists()
