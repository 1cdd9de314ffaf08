"""Probe 2026-12-01, the dataset tool: covariate tables (N8-N12, N16, N17), volumes read in their own dtype
(N88), complex and header-less volumes (R80, N82), FIFOs (N111), nearly all clipped volumes (R66, R69), brains
touching a face of the grid, and the normalisation recorded beside the records."""
import json
import os

import nibabel as nib
import numpy as np
import pytest

from tf3dstylegan import cli
from tf3dstylegan.commands.dataset import normalize_argv
from tf3dstylegan.data.labels import read_labels
from tf3dstylegan.data.provenance import recorded_normalization
from tf3dstylegan.data.volumes import DataError, load_volume, normalize_intensity, read_volume

PREFIX = "dataset_tool.py: error: "
SHAPE = (8, 8, 8)


def centred_brains(folder, n=4, dtype=np.float32, scale=1.0):
    """n volumes with a bright ball in the middle (touching no face) as sub-XX_T1w.nii.gz."""
    folder.mkdir(exist_ok=True)
    grid = np.indices(SHAPE).astype(np.float32) - 3.5
    ball = (np.sqrt((grid ** 2).sum(0)) < 2.5).astype(np.float32)
    for i in range(n):
        volume = ((0.5 + 0.1 * i) * ball * scale).astype(dtype)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / f"sub-{i:02d}_T1w.nii.gz"))
    return folder


def run_tool(capsys, *argv):
    """(exit code, stdout lines, stderr lines) of dataset_tool.py in-process."""
    capsys.readouterr()
    try:
        code = cli.run("tf3dstylegan.commands.dataset", normalize_argv(["dataset_tool.py", *map(str, argv)]))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


def create(tmp_path, capsys, *extra, inputs=None):
    inputs = inputs or centred_brains(tmp_path / "in")
    return run_tool(capsys, "create-from-images3d", tmp_path / "out", inputs, "--base_size", "2,2,2", *extra)


def ages_table(tmp_path, ages, newline="\n", name="p.tsv"):
    rows = ["participant_id\tage"] + [f"sub-{i:02d}\t{age}" for i, age in enumerate(ages)]
    path = tmp_path / name
    path.write_bytes(newline.join(rows).encode() + newline.encode())
    return path


def test_cr_only_line_endings_read_like_lf(tmp_path, capsys):
    """N8: old-Mac CR line endings were a _csv.Error traceback."""
    code, _, err = create(tmp_path, capsys, "--labels", ages_table(tmp_path, [50, 60, 70, 80], "\r"))
    assert code == 0, err
    _, labels = read_labels(tmp_path / "out")
    assert labels.shape == (4, 1) and np.isclose(labels.std(), 1.0, atol=1e-6)


@pytest.mark.parametrize("cells, message", [
    (["x" * 200_000, 60, 70, 80], r"{table}: line 2: not a readable CSV/TSV row \(field larger than field "
                                  r"limit"),  # N16
    (["x" * 5000, 60, 70, 80], r"{table}: line 2: a cell of 5,000 characters \(at most 4096\)"),
    (['"61', 60, 70, 80], r"{table}: line 2: a quoted field runs over lines 2-5 \(a quote left open\?\)"),  # N17
    (["nan"] * 4, r"{table}, line \d \(id 'sub-0\d'\): missing value in column 'age'"),  # N11
    (["1_000", 60, 70, 80], r"{table}, line 2 \(id 'sub-00'\): non-numeric value '1_000' in continuous column"),  # N12
])
def test_bad_tables_are_one_line_naming_the_table_and_line(tmp_path, capsys, cells, message):
    table = ages_table(tmp_path, cells)
    code, out, err = create(tmp_path, capsys, "--labels", table)
    assert code == 2 and len(err) == 1, err
    assert __import__("re").match(PREFIX + message.format(table=table), err[0]), err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ages", [[1e308, -1e308, 1e308, -1e308], [1e200, 0, 0, 0]])  # N9, N10
def test_huge_ages_are_standardised_without_overflow(tmp_path, capsys, ages):
    code, out, err = create(tmp_path, capsys, "--labels", ages_table(tmp_path, ages))
    assert code == 0, err
    encoding, labels = read_labels(tmp_path / "out")
    assert np.isfinite(labels).all() and np.isclose(labels.std(), 1.0, atol=1e-6)
    assert np.isfinite([encoding.covariates[0].mean, encoding.covariates[0].std]).all()


def test_a_volume_is_read_in_its_own_dtype_and_normalised_into_one_float32_copy(tmp_path):
    """N88: a 512^3 uint8 volume passed 3 GB, widened to float64 on the way; now it stays uint8 until the one
    float32 copy that becomes the record."""
    path = tmp_path / "u8.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(512, dtype=np.uint8).reshape(SHAPE), np.eye(4)), str(path))
    data, _ = read_volume(path)
    assert data.dtype == np.uint8
    out, clipped = normalize_intensity(data, "minmax", with_clipped=True)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0 and clipped == 0.0
    np.testing.assert_allclose(out, data / 255.0, atol=1e-6)


def test_complex_and_header_less_volumes_are_refused(tmp_path):
    """R80: a complex volume lost its imaginary part; N82: pixdim 0 was resampled as if 1 mm."""
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.complex64), np.eye(4)), str(tmp_path / "c.nii"))
    with pytest.raises(DataError, match=r"c.nii: holds complex values \(complex64\)"):
        read_volume(tmp_path / "c.nii")
    image = nib.Nifti1Image(np.ones(SHAPE, np.float32), None)
    image.header["pixdim"][1:4] = 0
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, str(tmp_path / "p.nii"))
    with pytest.raises(DataError, match=r"p.nii: its header gives no voxel size \(pixdim 0\): cannot resample"):
        load_volume(tmp_path / "p.nii", base_size=(2, 2, 2), img_shape=SHAPE, voxel_size=2.0)
    assert load_volume(tmp_path / "p.nii", base_size=(2, 2, 2))[0].shape == SHAPE  # no resampling: fine (N83)


def test_a_fifo_among_the_inputs_is_named(tmp_path, capsys):
    """N111: a FIFO named like a volume was skipped without a word."""
    inputs = centred_brains(tmp_path / "in")
    os.mkfifo(inputs / "sub-99_T1w.nii.gz")
    code, _, err = create(tmp_path, capsys, inputs=inputs)
    assert code == 2 and err == [f"{PREFIX}{inputs / 'sub-99_T1w.nii.gz'}: not a regular file (a FIFO or a device)"]
    code, out, _ = create(tmp_path, capsys, "--skip_bad", inputs=inputs)
    assert code == 0 and any("sub-99_T1w.nii.gz: not a regular file" in line for line in out)


def test_a_volume_nearly_all_clipped_is_refused(tmp_path, capsys):
    """R66/R69: int16 0..999 with --normalize none was stored as all ones."""
    inputs = centred_brains(tmp_path / "in", dtype=np.int16, scale=1998.0)
    inputs_file = inputs / "sub-00_T1w.nii.gz"
    big = np.arange(512, dtype=np.int16).reshape(SHAPE) * 2
    nib.save(nib.Nifti1Image(big, np.eye(4)), str(inputs_file))
    code, _, err = create(tmp_path, capsys, inputs=inputs)
    assert code == 2 and err[0].startswith(f"{PREFIX}{inputs_file}: --normalize none clips 100% of its voxels")
    assert err[0].endswith("use --normalize percentile") and not (tmp_path / "out").exists()
    code, out, err = create(tmp_path, capsys, "--normalize", "percentile", inputs=inputs)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["normalize"] == "percentile"
    assert recorded_normalization(tmp_path / "out") == "percentile"


def test_a_brain_touching_a_face_of_the_grid_is_warned_about(tmp_path, capsys):
    inputs = centred_brains(tmp_path / "in")
    shifted = np.zeros(SHAPE, np.float32)
    shifted[2:6, 0:3, 2:6] = 1.0  # the back of the head at y = 0 (RAS: the posterior face)
    nib.save(nib.Nifti1Image(shifted, np.eye(4)), str(inputs / "sub-09_T1w.nii.gz"))
    code, out, err = create(tmp_path, capsys, inputs=inputs)
    assert code == 0, err
    warnings = [line for line in out if "touches" in line]
    assert warnings == [f"warning: {inputs / 'sub-09_T1w.nii.gz'}: the brain touches the grid's posterior face "
                        "(y = 0): 16 voxels (voxels above 15% of the maximum): it is cut or off-centre; skull-strip "
                        "and centre (register) the scans first, e.g. with dataset_tool.py prepare"]


def test_records_without_a_dataset_record_have_no_known_normalisation(tmp_path):
    assert recorded_normalization(tmp_path) == ""
    (tmp_path / "demo.json").write_text("{}")
    assert recorded_normalization(tmp_path) == "none"  # the demo stores its volumes as they are


def test_the_default_voxel_limit_is_what_converts_in_under_2_gb(tmp_path, capsys):
    """N88: a 586 KB .nii.gz of 512^3 uint8 (the old default limit exactly) passed 3 GB; the default is now 2^26
    voxels (measured: 1.7 GB for a 512x512x256 volume with --normalize percentile), refused from the header."""
    import gzip
    header = nib.Nifti1Header()
    header.set_data_shape((512, 512, 512))
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    inputs = centred_brains(tmp_path / "in")
    path = inputs / "sub-09_T1w.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 4096))  # 4 KB of the 128 MiB it claims
    code, _, err = create(tmp_path, capsys, inputs=inputs)
    assert code == 2 and err == [f"{PREFIX}{path}: header claims shape 512x512x512 = 134217728 voxels (0.5 GiB as "
                                 "float32), more than --max_voxels 67108864"]
