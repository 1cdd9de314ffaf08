"""One subject through `prepare`: scan -> (N4) -> (deepbet mask) -> (affine to MNI152) -> the output grid ->
percentile normalisation -> `<stem>.nii.gz`, its QC picture and its QC row.

A FreeSurfer folder's brain (brainmask.mgz or norm.mgz: already bias-corrected and skull-stripped) skips N4
and stripping; its talairach.xfm starts the registration (or is the transform with `register='none'`).
"""
import dataclasses
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from tf3dstylegan.data.demo import demo_shape
from tf3dstylegan.data.volumes import DataError, normalize_intensity
from tf3dstylegan.io import atomic_path, write_json_atomic
from tf3dstylegan.preprocess import qc, template
from tf3dstylegan.preprocess.scans import read_freesurfer, read_scan

SKULL_STRIPS, REGISTRATIONS = ("deepbet", "none"), ("affine", "none")


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    voxel_size: float = 2.0
    img_shape: tuple = None  # default: the demo grid of the voxel size (80x96x112 at 2 mm)
    bias_correction: bool = True
    skull_strip: str = "deepbet"
    register: str = "affine"

    def grid(self):
        shape = tuple(self.img_shape) if self.img_shape else demo_shape(self.voxel_size)
        return shape, template.output_affine(shape, self.voxel_size)

    def to_json(self):
        return {**dataclasses.asdict(self), "img_shape": list(self.grid()[0])}


def output_paths(outdir, stem):
    """{name: path} of a subject's outputs: the volume, where a flagged one goes, its picture and QC row."""
    outdir = Path(outdir)
    return {"volume": outdir / f"{stem}.nii.gz", "excluded": outdir / "excluded" / f"{stem}.nii.gz",
            "png": outdir / "qc" / f"{stem}.png", "row": outdir / "qc" / f"{stem}.json"}


def to_grid(data, affine, world_to_mni, img_shape, grid_affine, order=1):
    """Resample a scan onto the output grid through scanner -> MNI (anti-aliased when the grid is coarser)."""
    zooms = nib.affines.voxel_sizes(affine)
    sigma = np.maximum(0.0, (float(np.min(nib.affines.voxel_sizes(grid_affine))) / zooms - 1.0) / 2.0)
    if order > 0 and np.any(sigma > 0):
        data = ndimage.gaussian_filter(data, sigma)
    matrix = np.linalg.inv(affine) @ np.linalg.inv(world_to_mni) @ grid_affine  # grid voxel -> scan voxel
    return ndimage.affine_transform(np.asarray(data, np.float32), matrix[:3, :3], matrix[:3, 3],
                                    output_shape=tuple(img_shape), order=order, mode="constant", cval=0.0)


def brain_of_scan(path, options, stripper, max_voxels):
    """(brain-only data, brain mask, affine, initial scanner -> MNI guess or None) of a scan file."""
    data, affine = read_scan(path, max_voxels)
    image = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    data, affine = np.asarray(image.dataobj, np.float32), image.affine
    if options.bias_correction:
        from tf3dstylegan.preprocess.bias import n4_correct  # pylint: disable=import-outside-toplevel
        data = n4_correct(data, affine)[0]
    if options.skull_strip == "deepbet":
        from tf3dstylegan.preprocess.skullstrip import NoBrainError  # pylint: disable=import-outside-toplevel
        try:
            mask = stripper.mask(data)
        except NoBrainError as err:
            raise DataError(path, f"not a brain scan? {err}") from None
    else:
        mask = data > float(data.min())
    return data * mask, mask, affine, None


def prepare_subject(subject, outdir, options, stripper=None, max_voxels=512 ** 3):
    """Write a subject's volume, QC picture and QC row (last: it marks the subject done); returns the row."""
    start = time.time()
    if subject.freesurfer:
        data, affine, talairach = read_freesurfer(subject.path, max_voxels)
        mask = data > 0
        if not mask.any():
            raise DataError(subject.path, "empty FreeSurfer brain volume")
        data = data * mask
    else:
        data, mask, affine, talairach = brain_of_scan(subject.path, options, stripper, max_voxels)
    world_to_mni = np.eye(4) if talairach is None else talairach
    if options.register == "affine":
        from tf3dstylegan.preprocess.register import register_to_template  # pylint: disable=import-outside-toplevel
        try:
            world_to_mni = register_to_template(data, affine, talairach)[0]
        except ValueError as err:
            raise DataError(subject.path, err) from None
    img_shape, grid_affine = options.grid()
    volume = to_grid(data, affine, world_to_mni, img_shape, grid_affine)
    brain_on_grid = to_grid(mask.astype(np.float32), affine, world_to_mni, img_shape, grid_affine) > 0.5
    try:
        volume = normalize_intensity(volume * brain_on_grid, "percentile")
    except ValueError as err:
        raise DataError(subject.path, f"nothing left on the output grid: {err}") from None
    template_brain = template.resample_template(img_shape, grid_affine, "brain") > 0.5
    rotation, scales = qc.rotation_and_scales(world_to_mni)
    edges = np.concatenate([m.ravel() for m in (mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[..., 0],
                                                 mask[..., -1])])
    grid_edges = [brain_on_grid[0], brain_on_grid[-1], brain_on_grid[:, 0], brain_on_grid[:, -1],
                  brain_on_grid[..., 0], brain_on_grid[..., -1]]
    brain_ml = float(mask.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000.0)
    row = {"file": subject.path, "output": f"{subject.stem}.nii.gz", "status": "ok",
           "similarity": qc.similarity(volume, template.resample_template(img_shape, grid_affine, "t1"),
                                       template_brain),
           "brain_ml": brain_ml, "rotation_deg": rotation, "scales": [float(s) for s in scales],
           "warnings": qc.warnings_for(brain_ml, scales, np.linalg.det(world_to_mni[:3, :3]) < 0,
                                       edges.mean() > 0.01, any(e.any() for e in grid_edges)),
           "world_to_mni": world_to_mni.tolist()}
    paths = output_paths(outdir, subject.stem)
    paths["png"].parent.mkdir(parents=True, exist_ok=True)
    save_on_grid(paths["volume"], volume, grid_affine)
    qc.write_qc_image(paths["png"], volume, template_brain)
    row["seconds"] = round(time.time() - start, 1)
    write_json_atomic(paths["row"], row)
    return row


def save_on_grid(path, volume, affine):
    """A float32 NIfTI whose s/q-forms are the MNI affine (code 4: MNI152), written atomically."""
    image = nib.Nifti1Image(np.asarray(volume, np.float32), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=4)
    image.set_sform(affine, code=4)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
