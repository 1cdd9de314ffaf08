"""The conditional demo's covariate effects on anatomy, and a ventricle volume measure to check them.

Coordinates are millimetres on the demo grid relative to its centre, where the demo places the
template's brain centre. The effects, applied to the template's anatomy before the per-subject
random transforms:

- age (years; no effect up to AGE_RANGE[0] = 50, full effect from AGE_RANGE[1] = 90, linear between):
  the lateral ventricles are magnified about their centroid (VENTRICLE_CENTRE_MM) by a Gaussian-
  weighted radial scaling: a point at p is drawn from c + (p - c) * (1 - a g(p)), with
  g(p) = exp(-|(p - c) / VENTRICLE_SIGMA_MM|^2 / 2) and a = MAX_VENTRICLE_CONTRACTION * weight.
  At the centroid that is a magnification by 1 / (1 - a) per axis (1.43x at 90 years). Measured with
  ventricle_volume on one 2 mm subject, the ventricles grow from 11.1 ml at 50 to 19.0 ml at 90
  years (+71%); over the 32 subjects of the 2 mm conditional demo the least-squares slope is about
  0.2 ml/year (0.195 +- 0.040 standard error; 0.16 ml/year at 4 mm, where the volumes are smaller).
  Sulci (and every other CSF space) widen: each voxel's intensity moves towards the darkest value
  within 1 mm of it (grey erosion of the 1 mm template) by MAX_SULCAL_WIDENING * weight.
- sex ('F' or 'M'): head size, every axis scaled by HEAD_SCALE[sex] (M 4% larger than F per axis,
  about 13% in brain volume).
"""
import numpy as np
from scipy import ndimage

AGE_RANGE = (50.0, 90.0)
SEXES = ("F", "M")
VENTRICLE_CENTRE_MM = (0.0, 4.0, 10.5)  # lateral ventricles' centroid relative to the brain centre
VENTRICLE_SIGMA_MM = (22.0, 32.0, 16.0)
MAX_VENTRICLE_CONTRACTION = 0.3
MAX_SULCAL_WIDENING = 0.5
HEAD_SCALE = {"F": 0.98, "M": 1.02}
# ventricle_volume: CSF-dark voxels inside this ellipsoid about VENTRICLE_CENTRE_MM.
MEASURE_SEMI_AXES_MM = (30.0, 44.0, 20.0)
CSF_FRACTION = 0.45  # dark = below this fraction of the ellipsoid's 90th intensity percentile (white matter)
CSF_INTENSITY = 0.33  # the ventricles' intensity as a fraction of white matter (the 2 mm demo's darkest: 0.31-0.33)


def age_weight(age) -> float:
    """The strength of the age effects: 0 up to 50 years, 1 from 90 years, linear between."""
    return min(1.0, max(0.0, (float(age) - AGE_RANGE[0]) / (AGE_RANGE[1] - AGE_RANGE[0])))


def magnify_ventricles(positions, age):
    """Grid positions (3 arrays broadcastable to [X, Y, Z], mm) -> positions to sample the anatomy at,
    so that the region about the ventricles appears magnified for this age; unchanged at 50 years."""
    contraction = MAX_VENTRICLE_CONTRACTION * age_weight(age)
    if contraction == 0.0:
        return positions
    offsets = [p - c for p, c in zip(positions, VENTRICLE_CENTRE_MM)]
    weight = np.exp(-0.5 * sum((o / s) ** 2 for o, s in zip(offsets, VENTRICLE_SIGMA_MM)))  # [X, Y, Z]
    scale = (1.0 - contraction * weight).astype(np.float32)
    return [c + o * scale for o, c in zip(offsets, VENTRICLE_CENTRE_MM)]


def sulcal_widening(age) -> float:
    """The blend weight towards the eroded template for this age (0 at 50 years)."""
    return MAX_SULCAL_WIDENING * age_weight(age)


def erode_csf(template) -> np.ndarray:
    """Grey erosion over the 3x3x3 neighbourhood (1 mm on the template): CSF spaces widened by 1 mm."""
    return ndimage.grey_erosion(template, size=(3, 3, 3))


def head_scale(sex) -> float:
    """Linear head-size factor of a sex ('F' or 'M')."""
    if sex not in HEAD_SCALE:
        raise ValueError(f"sex must be one of {SEXES}, got {sex!r}")
    return HEAD_SCALE[sex]


def measure_mask(img_shape, voxel_size) -> np.ndarray:
    """bool [X, Y, Z]: the ellipsoid about the ventricles on a centred grid of this voxel size."""
    axes = [voxel_size * (np.arange(n) - (n - 1) / 2.0) - c for n, c in zip(img_shape, VENTRICLE_CENTRE_MM)]
    grids = np.meshgrid(*axes, indexing="ij")
    return sum((g / s) ** 2 for g, s in zip(grids, MEASURE_SEMI_AXES_MM)) <= 1.0


def ellipsoid_intensities(volume, voxel_size):
    """The intensities [N] of a [0, 1] volume [X, Y, Z] (or [X, Y, Z, 1]) inside the measure's ellipsoid, and their
    90th percentile (white matter)."""
    volume = np.asarray(volume, np.float32)
    if volume.ndim == 4:
        volume = volume[..., 0]
    inside = volume[measure_mask(volume.shape, voxel_size)]
    return inside, float(np.percentile(inside, 90))


def ventricle_volume(volume, voxel_size) -> float:
    """Ventricle volume (mm^3) of a [0, 1] volume [X, Y, Z] (or [X, Y, Z, 1]) on the demo grid: the
    voxels darker than CSF_FRACTION of the 90th intensity percentile (white matter) inside the
    ellipsoid MEASURE_SEMI_AXES_MM about VENTRICLE_CENTRE_MM, times the voxel volume."""
    inside, white = ellipsoid_intensities(volume, voxel_size)
    return float(np.sum(inside < CSF_FRACTION * white)) * voxel_size ** 3


def partial_ventricle_volume(volume, voxel_size) -> float:
    """Partial-volume ventricle volume (mm^3) of a [0, 1] volume [X, Y, Z] (or [X, Y, Z, 1]) on the demo grid: each
    voxel of the ventricle_volume ellipsoid counts with its CSF fraction, (w - v) / (w - CSF_INTENSITY * w) clipped
    to [0, 1], w the ellipsoid's 90th intensity percentile (white matter). Continuous where ventricle_volume moves
    by whole voxels (at 8 mm it is 0 for most demo subjects), but darker grey matter and widened sulci count too:
    on demo subjects 1000-1002 from 50 to 90 years it grows by 10.1-11.7 ml at 2 mm (ventricle_volume: 5.2-9.0 ml),
    8.5-10.9 ml at 4 mm and 6.0-8.5 ml at 8 mm."""
    inside, white = ellipsoid_intensities(volume, voxel_size)
    fraction = np.clip((white - inside) / (white * (1.0 - CSF_INTENSITY)), 0.0, 1.0)
    return float(np.sum(fraction)) * voxel_size ** 3
