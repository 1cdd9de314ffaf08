"""dataset_tool.py prepare and tf3dstylegan.prepare.prepare_folder: outputs on the MNI grid, FreeSurfer folders,
the report, resuming, bad inputs (one line or a flagged row, nothing half-written), records and labels."""
import json
import os

import nibabel as nib
import numpy as np
import pytest

from tf3dstylegan import cli
from tf3dstylegan.commands.dataset import normalize_argv
from tf3dstylegan.data import DataError
from tf3dstylegan.data.records import dataset_info
from tf3dstylegan.prepare import prepare_folder
from tf3dstylegan.preprocess import synthetic, template

FAST = dict(bias_correction=False, skull_strip="none", register="none")
SCAN_SHAPE, SCAN_MM = (56, 68, 58), 3.0


def mni_brain(shift_mm=(0.0, 0.0, 0.0)):
    """(template brain on a 3 mm RAS grid, affine to world mm) where world = MNI + shift_mm."""
    affine = np.diag([SCAN_MM, SCAN_MM, SCAN_MM, 1.0])
    affine[:3, 3] = template.brain_centre() - SCAN_MM * (np.array(SCAN_SHAPE) - 1) / 2 + shift_mm
    mni_affine = affine.copy()
    mni_affine[:3, 3] -= shift_mm
    t1 = template.resample_template(SCAN_SHAPE, mni_affine, "t1")
    return t1 * (template.resample_template(SCAN_SHAPE, mni_affine, "brain") > 0.5) * 300.0, affine


def write_freesurfer(folder, shift_mm):
    """A FreeSurfer subject: brainmask.mgz in LIA voxel order, talairach.xfm undoing a world shift."""
    data, affine = mni_brain(shift_mm)
    lia = nib.orientations.ornt_transform(nib.io_orientation(affine), nib.orientations.axcodes2ornt("LIA"))
    image = nib.Nifti1Image(data.astype(np.float32), affine).as_reoriented(lia)
    (folder / "mri" / "transforms").mkdir(parents=True)
    nib.save(nib.MGHImage(np.asarray(image.dataobj, np.float32), image.affine), str(folder / "mri" / "brainmask.mgz"))
    rows = "\n".join(" ".join(f"{v:g}" for v in [*np.eye(3)[i], -shift_mm[i]]) for i in range(3))
    (folder / "mri" / "transforms" / "talairach.xfm").write_text(
        f"MNI Transform File\n\nTransform_Type = Linear;\nLinear_Transform =\n{rows};\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    data, affine = mni_brain()
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(folder / "sub-01_T1w.nii.gz"))
    np.savez(folder / "sub-02.npz", vol_data=data[::-1].copy(), affine=affine @ np.array(
        [[-1, 0, 0, SCAN_SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))  # LAS voxel order
    write_freesurfer(folder / "sub-03", (12.0, -8.0, 5.0))
    (folder / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\nsub-02\t70\nsub-03\t55\n")
    return folder


@pytest.mark.slow
def test_prepare_outputs_report_and_resume(inputs, tmp_path):
    out = tmp_path / "prepared"
    summary = prepare_folder(out, inputs, **FAST)
    assert summary["prepared"] == 3 and summary["ignored"] == ["participants.tsv"] and not summary["flagged"]
    expected_affine = template.output_affine((80, 96, 112), 2.0)
    for stem in ("sub-01_T1w", "sub-02", "sub-03"):
        image = nib.load(str(out / f"{stem}.nii.gz"))
        assert image.shape == (80, 96, 112) and np.allclose(image.affine, expected_affine)
        assert int(image.header["sform_code"]) == 4
        volume = image.get_fdata()
        assert volume.min() >= 0 and volume.max() == pytest.approx(1.0) and (out / "qc" / f"{stem}.png").is_file()
    rows = (out / "qc" / "prepare_report.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["file", "output", "status", "flag"] and len(rows) == 4
    for line in rows[1:]:
        cells = dict(zip(rows[0].split("\t"), line.split("\t")))
        assert cells["status"] == "ok" and float(cells["similarity"]) > 0.9, cells  # sub-03 through its xfm
        assert 1500 < float(cells["brain_ml"]) < 2100
    # the two inputs in other voxel orders land on the same voxels as the RAS one
    reference = nib.load(str(out / "sub-01_T1w.nii.gz")).get_fdata()
    assert np.abs(nib.load(str(out / "sub-02.nii.gz")).get_fdata() - reference).max() < 1e-4
    assert np.corrcoef(nib.load(str(out / "sub-03.nii.gz")).get_fdata().ravel(), reference.ravel())[0, 1] > 0.98
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    again = prepare_folder(out, inputs, **FAST)
    assert again["resumed"] == 3 and {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == mtimes
    with pytest.raises(DataError, match="other options"):
        prepare_folder(out, inputs, **{**FAST, "voxel_size": 1.0})


def write_bad_inputs(folder):
    folder.mkdir()
    data, affine = mni_brain()
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(folder / "good.nii.gz"))
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(folder / "corrupt.nii.gz"))
    (folder / "corrupt.nii.gz").write_bytes((folder / "corrupt.nii.gz").read_bytes()[:200])
    nib.save(nib.Nifti1Image(data[:, :, 20].astype(np.float32), affine), str(folder / "slice2d.nii"))
    nib.save(nib.Nifti1Image(np.zeros(SCAN_SHAPE, np.float32), affine), str(folder / "empty.nii"))
    noise = np.abs(np.random.default_rng(0).normal(size=SCAN_SHAPE)).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, affine), str(folder / "noise.nii.gz"))


@pytest.mark.slow
def test_bad_inputs_one_line_or_flagged(tmp_path):
    write_bad_inputs(tmp_path / "in")
    with pytest.raises(DataError, match=r"slice2d\.nii: shape \(56, 68\) is not a 3-D head scan"):
        prepare_folder(tmp_path / "out", tmp_path / "in", **FAST)  # every header is checked before any work
    assert not list((tmp_path / "out").glob("*.nii*"))
    summary = prepare_folder(tmp_path / "out", tmp_path / "in", skip_bad=True, **FAST)
    errors = "\n".join(summary["errors"])
    assert len(summary["errors"]) == 3 and "corrupt.nii.gz" in errors and "slice2d.nii: shape" in errors
    assert "empty.nii: empty volume" in errors
    assert list(summary["flagged"]) == ["noise.nii.gz"] and "similarity" in summary["flagged"]["noise.nii.gz"]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.nii*")) == ["good.nii.gz"]
    assert (out / "excluded" / "noise.nii.gz").is_file()
    assert not [p for p in out.rglob(".*")], "temporary files left behind"
    status = {line.split("\t")[0].rsplit("/", 1)[-1]: line.split("\t")[2]
              for line in (out / "qc" / "prepare_report.tsv").read_text().splitlines()[1:]}
    assert status == {"good.nii.gz": "ok", "noise.nii.gz": "excluded", "corrupt.nii.gz": "error",
                      "slice2d.nii": "error", "empty.nii": "error"}


def run_tool(*argv):
    return cli.run("tf3dstylegan.commands.dataset", normalize_argv(["dataset_tool.py", *map(str, argv)]))


def test_cli_prepare_records_labels_and_errors(inputs, tmp_path, capsys):
    out = tmp_path / "prepared"
    code = run_tool("prepare", out, inputs, "--skull_strip", "none", "--register", "none", "--no_bias_correction",
                    "--records", "--labels", inputs / "participants.tsv")
    printed = capsys.readouterr().out
    assert code == 0 and "prepared 3 of 3 subjects" in printed and "labels: 1 values per volume" in printed
    info = dataset_info(out / "records")
    assert info.num_volumes == 3 and tuple(info.img_shape) == (80, 96, 112) and info.label_size == 1
    bad = tmp_path / "bad"
    write_bad_inputs(bad)
    with pytest.raises(SystemExit) as exit_info:
        run_tool("prepare", tmp_path / "out2", bad, "--skull_strip", "none", "--register", "none")
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(error.splitlines()) == 1 and "slice2d.nii: shape" in error
    with pytest.raises(SystemExit):
        run_tool("prepare", tmp_path / "out3", inputs, "--labels", inputs / "participants.tsv")
    assert "--labels" in capsys.readouterr().err


@pytest.mark.slow
def test_prepare_registers_tilted_heads_in_parallel(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    heads = {}
    for i, orientation in enumerate(("LPS", "oblique")):
        head = synthetic.make_head(np.random.default_rng(10 + i), orientation, (3.0, 3.0, 3.0), canvas_mm=2)
        brain = nib.Nifti1Image(np.asarray(head.image.dataobj) * head.brain, head.image.affine)
        nib.save(brain, str(folder / f"head{i}.nii.gz"))
        heads[f"head{i}"] = head
    summary = prepare_folder(tmp_path / "out", folder, skull_strip="none", register="affine", workers=2)
    assert summary["prepared"] == 2 and not summary["errors"]
    for stem, head in heads.items():
        row = json.loads((tmp_path / "out" / "qc" / f"{stem}.json").read_text())
        assert synthetic.registration_error(np.array(row["world_to_mni"]), head) < 1.5
        assert row["similarity"] > 0.8 and row["warnings"] == []  # 3 mm scans: blurrier than the 2 mm template
    assert os.listdir(tmp_path / "out" / "qc")
