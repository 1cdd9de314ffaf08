"""N4 bias-field correction (Tustison et al. 2010) with SimpleITK.

The field is fitted on a copy shrunk to about FIT_VOXEL_MM voxels inside an Otsu mask of the head, then
evaluated on the full grid and divided out.
"""
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from tf3dstylegan.preprocess.register import to_itk

FIT_VOXEL_MM = 4.0
ITERATIONS = (50, 50, 30, 20)  # per fitting level (B-spline control-point grid doubled each level)


def n4_correct(data, affine):
    """(corrected [X, Y, Z] float32, multiplicative bias field) of a scan with a 4x4 voxel -> mm affine."""
    data = np.asarray(data, np.float32)
    positive = np.maximum(data, np.float32(np.percentile(data, 99.9) * 1e-3))  # N4 works on log intensities
    image = to_itk(positive, affine)
    head = sitk.OtsuThreshold(image, 0, 1, 200)
    shrink = max(1, int(round(FIT_VOXEL_MM / min(image.GetSpacing()))))
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(ITERATIONS))
    small = sitk.Shrink(image, [shrink] * 3)
    corrector.Execute(small, sitk.Shrink(head, [shrink] * 3))
    # The field is smooth: evaluated on the shrunk grid and interpolated, much faster than on the full one.
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(small)).transpose(2, 1, 0)
    field = np.exp(ndimage.zoom(log_field, np.divide(data.shape, log_field.shape), order=1, mode="nearest",
                                grid_mode=True)).astype(np.float32)
    return data / field, field
