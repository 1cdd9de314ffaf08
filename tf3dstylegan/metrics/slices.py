"""Middle slices of [B, X, Y, Z, C] volumes on the three anatomical planes.

X is the first NIfTI axis; with RAS-oriented data sagittal = fixed X, coronal = fixed Y, axial = fixed Z.
Slices keep the remaining axes in order (sagittal [B, Y, Z, C], coronal [B, X, Z, C], axial [B, X, Y, C]);
the original's single FID slice (`[..., D2 // 2]`) is the axial one.
"""
import numpy as np

from tf3dstylegan.io import PLANE_AXIS, PLANES  # the fixed axis of an [X, Y, Z] volume; batches: that + 1


def middle_slice(volumes, plane):
    """[B, X, Y, Z, C] -> the middle slice (index size // 2) of `plane`, a [B, h, w, C] array."""
    volumes = np.asarray(volumes)
    if volumes.ndim != 5:
        raise ValueError(f"volumes must be [B, X, Y, Z, C], got shape {volumes.shape}")
    if plane not in PLANE_AXIS:
        raise ValueError(f"unknown plane {plane!r}; choose from {PLANES}")
    axis = PLANE_AXIS[plane] + 1
    return np.take(volumes, volumes.shape[axis] // 2, axis=axis)


def plane_slices(volumes):
    """{plane: [B, h, w, C]}: the middle slice of each plane (sagittal, coronal, axial) of a batch."""
    return {plane: middle_slice(volumes, plane) for plane in PLANES}
