"""Synthetic T1 heads with known answers, made from the MNI152 template, for tests and benchmarks of `prepare`.

A head is the skull-stripped template with tissue shells around its brain (CSF, the skull's two tables and
diploe, muscle, fat, skin; thicknesses varied smoothly per head), two eyes in orbital fat and a neck below,
seen through a known MNI -> scanner affine (rotation, shift, per-axis scale), on a scanner grid of any
orientation (RAS, LPS, oblique) and voxel size, with a smooth multiplicative bias field and Rician noise, in
arbitrary scanner units. It comes with its true brain and white-matter masks on the scanner grid.
"""
import dataclasses
import functools

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tf3dstylegan.data.demo import smooth_field
from tf3dstylegan.preprocess.template import load_template, load_white_matter

# (outer distance from the brain in mm, T1 intensity relative to white matter) from the brain outwards.
SHELLS = ((2.0, 0.15), (4.0, 0.06), (6.5, 0.45), (8.0, 0.06), (10.0, 0.35), (14.5, 1.0), (16.0, 0.55))
EYES_MNI = ((-32.0, 52.0, -42.0), (32.0, 52.0, -42.0))
EYE_RADIUS, ORBIT_FAT = 11.0, 4.0
NECK_TOP, NECK_CENTRE, NECK_RADII = -45.0, (0.0, -20.0), (48.0, 55.0)
PAD_BELOW, PAD_SIDES = 70, 12  # canvas voxels added to the template's grid
ORIENTATIONS = ("RAS", "LPS", "oblique", "LIA")
VOXEL_SIZES = ((1.0, 1.0, 1.0), (1.2, 1.0, 1.0), (0.9, 0.9, 1.5), (1.0, 1.0, 2.0))
FIELD_OF_VIEW_MM = (240.0, 256.0, 256.0)


@dataclasses.dataclass
class SyntheticHead:
    image: nib.Nifti1Image  # scanner grid, scanner units
    brain: np.ndarray  # bool [X, Y, Z] on the scanner grid
    white_matter: np.ndarray  # bool, eroded (partial volume excluded)
    world_to_mni: np.ndarray  # 4x4 scanner mm -> MNI mm, the answer of an affine registration
    description: str
    canvas_mm: float = 1.0


@functools.lru_cache(maxsize=2)
def head_canvas(canvas_mm=1):
    """(intensity-free tissue inputs on a padded MNI grid of canvas_mm (1 or 2) voxels: distance from the brain
    (mm) float32, template T1 with zero outside the brain, brain mask, white-matter probability, distances to
    the eyes' centres (mm) and the neck's elliptic radius, canvas affine)."""
    t1, brain, affine = load_template()
    wm = load_white_matter()
    step = int(canvas_mm)
    if step > 1:
        t1, wm = (ndimage.gaussian_filter(v, (step - 1) / 2.0)[::step, ::step, ::step] for v in (t1, wm))
        brain, affine = brain[::step, ::step, ::step], affine @ np.diag([step, step, step, 1.0])
    pad = [(PAD_SIDES // step, PAD_SIDES // step), (PAD_SIDES // step, PAD_SIDES // step),
           (PAD_BELOW // step, PAD_SIDES // step)]
    t1, brain, wm = np.pad(t1 * brain, pad), np.pad(brain, pad), np.pad(wm, pad)
    canvas_affine = affine.copy()
    canvas_affine[:3, 3] -= affine[:3, :3] @ [p[0] for p in pad]
    distance = ndimage.distance_transform_edt(~brain, sampling=step).astype(np.float32)
    ijk = np.indices(brain.shape, np.float32)
    mni = [canvas_affine[a, a] * ijk[a] + canvas_affine[a, 3] for a in range(3)]
    eyes = np.zeros(brain.shape, np.float32)  # distance to the nearest eye centre (mm)
    eyes[:] = np.inf
    for centre in EYES_MNI:
        eyes = np.minimum(eyes, np.sqrt(sum((m - c) ** 2 for m, c in zip(mni, centre))))
    neck = ((mni[0] - NECK_CENTRE[0]) / NECK_RADII[0]) ** 2 + ((mni[1] - NECK_CENTRE[1]) / NECK_RADII[1]) ** 2
    neck = np.where(mni[2] < NECK_TOP, np.sqrt(neck), np.inf).astype(np.float32)
    return distance, t1, brain, wm, eyes, neck, canvas_affine


def tissue_intensity(rng, canvas_mm=1):
    """The T1 intensity of a head on the canvas (white matter ~ 1), with per-head shell thicknesses."""
    distance, t1, brain, _, eyes, neck, _ = head_canvas(canvas_mm)
    coarse = tuple(n // 8 for n in distance.shape)  # thickness changes over centimetres: a coarse field, zoomed
    stretch = ndimage.zoom(np.exp(smooth_field(rng, coarse, 3, 0.6)), np.divide(distance.shape, coarse), order=1)
    d = distance / stretch * rng.uniform(0.85, 1.15)
    head = np.zeros_like(distance)
    for outer, value in reversed(SHELLS):
        head[d <= outer] = value
    head[(eyes < EYE_RADIUS + ORBIT_FAT) & (d > 3.0)] = 1.0
    head[(eyes < EYE_RADIUS) & (d > 3.0)] = 0.12
    neck_tissue = np.where(neck < 0.9, 0.4, np.where(neck < 1.0, 1.0, np.where(neck < 1.03, 0.55, 0.0)))
    head = np.where((head == 0) & (d > 0), neck_tissue, head)
    return np.where(brain, t1, head).astype(np.float32)


def scanner_grid(rng, centre, orientation, voxel_size):
    """(shape, 4x4 voxel -> scanner mm) of a grid of FIELD_OF_VIEW_MM around `centre` in an orientation."""
    shape = tuple(int(round(f / v)) for f, v in zip(FIELD_OF_VIEW_MM, voxel_size))
    axes = {"RAS": np.eye(3), "LPS": np.diag([-1.0, -1.0, 1.0]),
            "LIA": np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
            "oblique": Rotation.from_euler("xyz", rng.uniform(10, 25, 3) * rng.choice([-1, 1], 3),
                                           degrees=True).as_matrix()}[orientation]
    affine = np.eye(4)
    affine[:3, :3] = axes @ np.diag(voxel_size)
    affine[:3, 3] = centre + rng.uniform(-10, 10, 3) - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return shape, affine


def random_mni_to_scanner(rng, max_rotation_deg=15.0, max_shift_mm=20.0, max_scale=0.10):
    """4x4 MNI mm -> scanner mm: a rotation of up to max_rotation_deg about a random axis through the brain's
    centre, a shift of up to max_shift_mm and per-axis scales within 1 +- max_scale."""
    axis = rng.normal(size=3)
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(rng.uniform(0, max_rotation_deg)))
    shift = rng.normal(size=3)
    shift *= rng.uniform(0, max_shift_mm) / np.linalg.norm(shift)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.as_matrix() @ np.diag(rng.uniform(1 - max_scale, 1 + max_scale, 3))
    matrix[:3, 3] = shift
    return matrix


def make_head(rng, orientation="RAS", voxel_size=(1.0, 1.0, 1.0), bias_std=0.35, noise_std=0.03, canvas_mm=1,
              **transform_ranges) -> SyntheticHead:
    """One synthetic head (see the module docstring); transform_ranges go to random_mni_to_scanner; canvas_mm 2
    makes it from the template at 2 mm (fast, for coarse scanner grids)."""
    distance, _, brain, wm, _, _, canvas_affine = head_canvas(canvas_mm)
    intensity = tissue_intensity(rng, canvas_mm)
    mni_to_scanner = random_mni_to_scanner(rng, **transform_ranges)
    shape, affine = scanner_grid(rng, mni_to_scanner[:3, 3] + [0.0, -20.0, -10.0], orientation, voxel_size)
    voxel_to_canvas = np.linalg.inv(canvas_affine) @ np.linalg.inv(mni_to_scanner) @ affine

    def sample(volume, order=1):
        return ndimage.affine_transform(volume, voxel_to_canvas[:3, :3], voxel_to_canvas[:3, 3], output_shape=shape,
                                        order=order, mode="constant", cval=0.0)
    sigma = max(0.0, (float(np.mean(voxel_size)) / canvas_mm - 1.0) / 2.0)
    clean = sample(ndimage.gaussian_filter(intensity, sigma) if sigma else intensity)
    true_brain = sample(brain.astype(np.float32)) > 0.5
    white_matter = ndimage.binary_erosion(sample(wm) > 0.9)
    bias = np.exp(smooth_field(rng, shape, 2, bias_std))
    noisy = np.hypot(clean * bias + rng.normal(0, noise_std, shape), rng.normal(0, noise_std, shape))
    scale = rng.uniform(300.0, 1500.0)
    image = nib.Nifti1Image((noisy * scale).astype(np.float32), affine)
    description = (f"{orientation} voxels {'x'.join(f'{v:g}' for v in voxel_size)} mm, "
                   f"bias std {bias_std:g}, noise {noise_std:g}")
    return SyntheticHead(image, true_brain, white_matter, np.linalg.inv(mni_to_scanner), description, canvas_mm)


def registration_error(estimated_world_to_mni, head, num_points=2000, seed=0):
    """Mean distance (mm) between the true MNI positions of points inside the brain and those the estimated
    scanner -> MNI affine gives them."""
    _, _, brain, _, _, _, canvas_affine = head_canvas(head.canvas_mm)
    voxels = np.argwhere(brain)
    voxels = voxels[np.random.default_rng(seed).choice(len(voxels), num_points, replace=False)]
    mni = (canvas_affine @ np.c_[voxels, np.ones(num_points)].T)  # [4, N]
    recovered = estimated_world_to_mni @ np.linalg.inv(head.world_to_mni) @ mni
    return float(np.mean(np.linalg.norm(recovered[:3] - mni[:3], axis=0)))
