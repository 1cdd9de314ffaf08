"""The MNI152 target of `prepare`: nilearn's ICBM 2009a symmetric T1 template (skull-stripped, 1 mm), its brain
and white-matter masks, and the output grids placed in MNI millimetres.

The output grid of a voxel size is the demo data's (tf3dstylegan.data.demo.demo_shape: 80x96x112 at 2 mm,
160x192x224 at 1 mm), centred on the centre of the template brain's bounding box, so that the affine of a
prepared volume maps its voxels to MNI152 millimetres and the brain sits in the middle of the field of view.
"""
import functools

import nibabel as nib
import numpy as np
from scipy import ndimage

from tf3dstylegan.data.demo import template_path
from tf3dstylegan.data.nifti import grid_affine

WM_FILE = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"


@functools.lru_cache(maxsize=1)
def load_template():
    """(T1 [x, y, z] float32 scaled to white matter ~ 1, brain mask bool, affine voxel -> MNI mm)."""
    image = nib.load(str(template_path()))
    data = image.get_fdata(dtype=np.float32)
    brain = ndimage.binary_fill_holes(data > 0)
    data = data / np.float32(np.percentile(data[brain], 99))
    return data, brain, np.asarray(image.affine, np.float64)


@functools.lru_cache(maxsize=1)
def load_white_matter():
    """White-matter probability [x, y, z] in [0, 1] on the template's grid."""
    return nib.load(str(template_path().with_name(WM_FILE))).get_fdata(dtype=np.float32) / np.float32(255.0)


def brain_centre():
    """Centre (MNI mm) of the bounding box of the template's brain."""
    _, brain, affine = load_template()
    voxels = np.argwhere(brain)
    return (affine @ np.append((voxels.min(0) + voxels.max(0)) / 2.0, 1.0))[:3]


def output_affine(img_shape, voxel_size):
    """4x4 voxel -> MNI mm affine of the output grid: the package's centred RAS grid moved to the brain's centre."""
    affine = grid_affine(img_shape, voxel_size)
    affine[:3, 3] += brain_centre()
    return affine


def resample_template(img_shape, affine, what="t1"):
    """See template_on_grid; cached per grid (a copy is returned)."""
    return _template_on_grid(tuple(int(n) for n in img_shape), tuple(np.ravel(affine)), what).copy()


@functools.lru_cache(maxsize=8)
def _template_on_grid(img_shape, affine, what):
    return template_on_grid(img_shape, np.reshape(affine, (4, 4)), what)


def template_on_grid(img_shape, affine, what="t1"):
    """The template's T1 ('t1'), brain mask ('brain', float in [0, 1]) or white matter ('wm') on a grid of
    `img_shape` whose voxels `affine` maps to MNI mm (trilinear; smoothed first when the grid is coarser)."""
    data, brain, template_affine = load_template()
    data = {"t1": data, "brain": brain.astype(np.float32), "wm": None}[what]
    data = load_white_matter() if data is None else data
    zooms = nib.affines.voxel_sizes(affine)
    sigma = max(0.0, (float(np.min(zooms)) - 1.0) / 2.0)
    if sigma > 0:
        data = ndimage.gaussian_filter(data, sigma)
    matrix = np.linalg.inv(template_affine) @ affine  # grid voxel -> template voxel
    return ndimage.affine_transform(data, matrix[:3, :3], matrix[:3, 3], output_shape=tuple(img_shape), order=1,
                                    mode="constant", cval=0.0).astype(np.float32)
