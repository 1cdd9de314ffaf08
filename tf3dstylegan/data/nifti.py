"""The NIfTI grid convention shared by the dataset tool, the demo data and generation.

Every volume this package writes lies on an RAS grid of isotropic voxels whose centre is the
world origin: voxel (i, j, k) sits at voxel_size * ((i, j, k) - (shape - 1) / 2) mm.
"""
import os
from pathlib import Path

import nibabel as nib
import numpy as np

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def grid_affine(img_shape, voxel_size) -> np.ndarray:
    """4x4 voxel-to-world affine (RAS, mm) of a centred isotropic grid of shape (X, Y, Z)."""
    shape = np.asarray(img_shape, np.float64)
    if shape.shape != (3,) or voxel_size <= 0:
        raise ValueError(f"need a 3-D shape and a positive voxel size, got {tuple(img_shape)}, {voxel_size}")
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -voxel_size * (shape - 1.0) / 2.0
    return affine


def nifti_suffix(path) -> str:
    """'.nii.gz' or '.nii' for a NIfTI path, '' otherwise."""
    name = Path(path).name.lower()
    return next((s for s in NIFTI_SUFFIXES if name.endswith(s)), "")


def save_volume(path, volume, voxel_size) -> Path:
    """Write a float32 volume [X, Y, Z] or [X, Y, Z, 1] as NIfTI on grid_affine, atomically."""
    path = Path(path)
    suffix = nifti_suffix(path)
    if not suffix:
        raise ValueError(f"{path}: NIfTI file names must end with .nii or .nii.gz")
    volume = np.asarray(volume, np.float32)
    if volume.ndim == 4 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a volume [X, Y, Z] or [X, Y, Z, 1], got shape {volume.shape}")
    image = nib.Nifti1Image(volume, grid_affine(volume.shape, float(voxel_size)))
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=2)
    image.set_sform(image.affine, code=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the suffix: nibabel picks gzip from it.
    tmp = path.with_name(f".{path.name[:-len(suffix)]}.tmp{os.getpid()}{suffix}")
    try:
        nib.save(image, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
