"""Affine (12-parameter) registration of a brain to the MNI152 template with SimpleITK.

Arrays here are nibabel's: [i, j, k] voxels and 4x4 voxel -> RAS mm affines. ITK works in LPS millimetres on
[k, j, i] arrays; `to_itk` and `itk_affine_to_ras` do the conversions, so every transform that leaves this module
is a 4x4 RAS mm -> RAS mm matrix (scanner -> MNI).

Initialisation: the centres of mass are matched, then the metric at 8 mm is evaluated for several rotations
(identity and +-ROTATION_STEP_DEG about each axis) and the best is kept; from it the affine is fitted
at 8, 4 and 2 mm (Mattes mutual information on a seeded random sample of the template brain's voxels,
conjugate gradients with a line search, scales from physical shifts; plain or regular-step gradient descent
diverged on some of the synthetic heads).
"""
import itertools

import nibabel as nib
import nibabel.processing
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from tf3dstylegan.preprocess.template import load_template

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS, its own inverse
ROTATION_STEP_DEG = 20.0
TARGET_VOXEL_MM = 2.0
SHRINK_FACTORS, SMOOTHING_MM = (4, 2, 1), (4.0, 2.0, 0.0)
SAMPLING_FRACTION, SEED = 0.1, 1
ORTHOGONAL_TOLERANCE = 1e-4


def to_itk(data, affine):
    """SimpleITK image of a nibabel array and affine; ValueError for a sheared affine (ITK's grids are not)."""
    lps = LPS @ np.asarray(affine, np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if np.abs(direction.T @ direction - np.eye(3)).max() > ORTHOGONAL_TOLERANCE:
        raise ValueError("the affine has shear; resample the scan onto an orthogonal grid first")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection(direction.ravel().tolist())
    return image


def itk_affine_to_ras(transform):
    """4x4 RAS -> RAS matrix of an ITK affine transform (ITK's maps fixed LPS points to moving LPS points)."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.reshape(transform.GetMatrix(), (3, 3))
    centre = np.asarray(transform.GetCenter())
    matrix[:3, 3] = centre + np.asarray(transform.GetTranslation()) - matrix[:3, :3] @ centre
    return LPS @ matrix @ LPS


def ras_to_itk_affine(matrix):
    """ITK AffineTransform of a 4x4 RAS -> RAS matrix."""
    lps = LPS @ np.asarray(matrix, np.float64) @ LPS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(lps[:3, :3].ravel().tolist())
    transform.SetTranslation(lps[:3, 3].tolist())
    return transform


def downsampled(data, affine, voxel_mm=TARGET_VOXEL_MM):
    """(data, affine) resampled onto a world-aligned grid of voxel_mm voxels, anti-aliased."""
    sigma = np.maximum(0.0, (voxel_mm / nib.affines.voxel_sizes(affine) - 1.0) / 2.0)
    data = ndimage.gaussian_filter(np.asarray(data, np.float32), sigma) if np.any(sigma > 0) else data
    image = nibabel.processing.resample_to_output(nib.Nifti1Image(np.asarray(data, np.float32), affine),
                                                  voxel_mm, order=1, mode="constant", cval=0.0)
    return np.asarray(image.dataobj, np.float32), image.affine


def fixed_template():
    """The template brain at TARGET_VOXEL_MM and its brain mask, dilated by 2 voxels, as SimpleITK images."""
    data, brain, affine = load_template()
    step = int(TARGET_VOXEL_MM)
    data = ndimage.gaussian_filter(data * brain, (step - 1) / 2.0)[::step, ::step, ::step]
    mask = ndimage.binary_dilation(brain[::step, ::step, ::step], iterations=2).astype(np.uint8)
    coarse = affine.copy()
    coarse[:3, :3] *= step
    mask_image = sitk.Cast(to_itk(mask, coarse), sitk.sitkUInt8)
    return to_itk(data, coarse), mask_image


def _method(fixed_mask, shrink, smoothing, iterations, step):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricFixedMask(fixed_mask)
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_FRACTION, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsConjugateGradientLineSearch(1.0, iterations, 1e-6, 10, lineSearchUpperLimit=2.0,
                                                     lineSearchMaximumIterations=10,
                                                     maximumStepSizeInPhysicalUnits=step)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(smoothing))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _rigid_candidates(initial):
    """Euler transforms about the fixed image's centre of mass: `initial`'s shift, several rotations."""
    centre = np.asarray(initial.GetCenter())
    for axis, sign in itertools.chain([(None, 0)], itertools.product(range(3), (-1, 1))):
        angles = [0.0, 0.0, 0.0]
        if axis is not None:
            angles[axis] = sign * np.radians(ROTATION_STEP_DEG)
        rigid = sitk.Euler3DTransform(centre.tolist(), *angles, initial.GetTranslation())
        yield rigid


def best_rotation(fixed, fixed_mask, moving):
    """ITK affine start: the centres of mass matched, the candidate rotation with the best metric at 8 mm."""
    start = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    coarse = [sitk.Shrink(sitk.SmoothingRecursiveGaussian(image, SMOOTHING_MM[0]), [SHRINK_FACTORS[0]] * 3)
              for image in (fixed, moving)]
    best = None
    for candidate in _rigid_candidates(start):
        method = _method(sitk.Shrink(fixed_mask, [SHRINK_FACTORS[0]] * 3), (1,), (0.0,), 1, 1.0)
        method.SetInitialTransform(candidate)
        value = method.MetricEvaluate(*coarse)
        if best is None or value < best[0]:
            best = (value, candidate)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(best[1].GetCenter())
    affine.SetMatrix(best[1].GetMatrix())
    affine.SetTranslation(best[1].GetTranslation())
    return affine


def register_to_template(moving_data, moving_affine, initial=None):
    """(4x4 scanner RAS -> MNI RAS affine, final metric value) of an affine fit of a brain-only volume to the
    template's brain. `initial`: a 4x4 scanner -> MNI guess (a FreeSurfer talairach.xfm) instead of the search."""
    fixed, fixed_mask = fixed_template()
    moving = to_itk(*downsampled(moving_data, moving_affine))
    if initial is None:
        affine = best_rotation(fixed, fixed_mask, moving)
    else:
        affine = ras_to_itk_affine(np.linalg.inv(initial))  # ITK's transform maps MNI to the scanner
    method = _method(fixed_mask, SHRINK_FACTORS, SMOOTHING_MM, 50, 1.0)
    method.SetInitialTransform(affine, inPlace=True)
    method.Execute(fixed, moving)
    return np.linalg.inv(itk_affine_to_ras(affine)), float(method.GetMetricValue())
