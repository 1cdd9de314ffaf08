"""Reading, checking, resampling and normalising input volumes (.nii, .nii.gz, .npz `vol_data`).

No TensorFlow here: these functions run in worker processes of the dataset tool.
"""
import concurrent.futures
import functools
import multiprocessing
import zipfile
from pathlib import Path
from typing import NamedTuple, Tuple

import nibabel as nib
import nibabel.processing
import numpy as np
from scipy import ndimage

from tf3dstylegan.config import resolution_log2_for_shape
from tf3dstylegan.data.nifti import grid_affine, nifti_suffix

NORMALIZATIONS = ("none", "minmax", "percentile")
PERCENTILES = (0.5, 99.5)  # percentile normalisation: low over all voxels, high over the foreground
DEFAULT_MAX_VOXELS = 2 ** 26  # larger claimed sizes are refused before reading (--max_voxels allows them); 2^26
# voxels (e.g. 512x512x256) convert in 1.7 GB, 2^27 needed 2.8 GB (README, Data)
MAX_CLIPPED = 0.5  # a volume --normalize clips more of is refused
WARN_CLIPPED = 0.02  # ... and more than this is warned about
TOUCH_THRESHOLD, TOUCH_FRACTION = 0.15, 0.05  # a face with > 5% of its voxels above 15% of the maximum
FACE_NAMES = {"R": ("left", "right"), "L": ("right", "left"), "A": ("posterior", "anterior"),
              "P": ("anterior", "posterior"), "S": ("inferior", "superior"), "I": ("superior", "inferior")}


class DataError(ValueError):
    """A bad input file or folder; str() is the one-line '<file>: <problem>' message."""

    def __init__(self, path, problem):
        self.path, self.problem = str(path), " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


def volume_suffix(path) -> str:
    """The recognised suffix of a volume file name, '' if none."""
    return nifti_suffix(path) or (".npz" if str(path).lower().endswith(".npz") else "")


def list_volume_files(indir):
    """Sorted non-hidden entries of a folder that are not folders (all of them: unknown kinds, FIFOs and devices
    are reported later, by read_volume)."""
    indir = Path(indir)
    if not indir.is_dir():
        raise DataError(indir, "not a folder")
    files = sorted(p for p in indir.iterdir() if not p.is_dir() and not p.name.startswith("."))
    if not files:
        raise DataError(indir, "empty folder: no .nii, .nii.gz or .npz files")
    return files


def check_claimed_size(path, shape, max_voxels):
    """DataError when a file's header claims more than max_voxels voxels (checked before reading)."""
    shape = tuple(int(n) for n in shape)
    voxels = int(np.prod(shape, dtype=np.float64))
    if voxels > max_voxels:
        raise DataError(path, f"header claims shape {'x'.join(map(str, shape))} = {voxels} voxels "
                              f"({voxels * 4 / 2 ** 30:.1f} GiB as float32), more than --max_voxels {max_voxels}")


def _npz_header(archive, path, key):
    """(shape, dtype) that the .npy header of archive[key] claims, read without its data."""
    with archive.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise DataError(path, f"{key!r} has non-numeric dtype {dtype}")
    return shape, dtype


def read_volume(path, max_voxels=DEFAULT_MAX_VOXELS):
    """(array, affine or None) of a volume file, in the file's own (real) dtype so that a large integer volume
    is not widened before it is needed; DataError when it cannot be read, is not a regular file, holds complex
    values, or its header claims more than max_voxels voxels (checked before the data is read)."""
    path = Path(path)
    suffix = volume_suffix(path)
    if not suffix:
        raise DataError(path, "not an image file (expected .nii, .nii.gz or .npz)")
    if not path.exists():
        raise DataError(path, "unreadable: no such file")
    if not path.is_file():  # opening a FIFO would block
        raise DataError(path, "not a regular file (a FIFO or a device)")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "vol_data" not in archive.files:
                    raise DataError(path, f"no 'vol_data' array in .npz (has {archive.files})")
                check_claimed_size(path, _npz_header(archive, path, "vol_data")[0], max_voxels)
                affine = None
                if "affine" in archive.files:
                    if tuple(_npz_header(archive, path, "affine")[0]) != (4, 4):
                        raise DataError(path, "'affine' must be a 4x4 array")
                    affine = np.asarray(archive["affine"], np.float64)
                data = archive["vol_data"]
        else:
            image = nib.load(str(path))
            check_claimed_size(path, image.header.get_data_shape(), max_voxels)
            data, affine = np.asanyarray(image.dataobj), np.asarray(image.affine, np.float64)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, nib.filebasedimages.ImageFileError) as err:
        raise DataError(path, f"unreadable or truncated file ({type(err).__name__}: {err})") from None
    if np.iscomplexobj(data):
        raise DataError(path, f"holds complex values ({data.dtype}): expected a real-valued volume")
    return (data.astype(np.uint8) if data.dtype == bool else data), affine


def check_volume(path, data) -> np.ndarray:
    """The volume as [X, Y, Z]; DataError for other ranks, several channels, NaN or Inf."""
    data = np.asarray(data)
    while data.ndim > 3 and data.shape[-1] == 1:  # [X, Y, Z, 1] (and NIfTI's [X, Y, Z, 1, 1])
        data = data[..., 0]
    if data.ndim == 4:
        raise DataError(path, f"has {data.shape[-1]} channels (shape {data.shape}); "
                                "only single-channel volumes are supported")
    if data.ndim != 3:
        raise DataError(path, f"expected a 3-D volume, got shape {data.shape}")
    if min(data.shape) < 1:
        raise DataError(path, f"empty volume of shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise DataError(path, f"contains {int(np.sum(~np.isfinite(data)))} NaN or Inf values")
    return data


def check_shape(path, shape, base_size):
    """DataError unless shape == base_size * 2**k."""
    try:
        resolution_log2_for_shape(shape, base_size)
    except ValueError as err:
        raise DataError(path, str(err)) from None


def resample_to_grid(data, affine, img_shape, voxel_size, order=1) -> np.ndarray:
    """Resample [x, y, z] onto grid_affine(img_shape, voxel_size), RAS, the input's field-of-view
    centre at the grid centre; anti-aliased when the target voxels are larger."""
    data = np.asarray(data, np.float32)
    sigma = np.maximum(0.0, (voxel_size / nib.affines.voxel_sizes(affine) - 1.0) / 2.0)
    if np.any(sigma > 0):
        data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    fov_centre = affine @ np.append((np.asarray(data.shape) - 1.0) / 2.0, 1.0)
    target_to_world = grid_affine(img_shape, voxel_size)
    target_to_world[:3, 3] += fov_centre[:3]
    resampled = nibabel.processing.resample_from_to(nib.Nifti1Image(data, affine), (tuple(img_shape), target_to_world),
                                                    order=order, mode="constant", cval=float(data.min()))
    return np.asarray(resampled.dataobj, np.float32)


def intensity_window(data, mode):
    """(low, high): the input values that --normalize `mode` maps to 0 and 1 ('none': 0 and 1)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "none":
        return 0.0, 1.0
    low = float(np.min(data))
    if mode == "percentile":
        low = float(np.percentile(data, PERCENTILES[0]))
        foreground = data[data > low]
        high = float(np.percentile(foreground, PERCENTILES[1])) if foreground.size else low
    else:
        high = float(np.max(data))
    if high <= low:
        raise ValueError("constant volume: cannot normalise")
    return low, high


def normalize_intensity(data, mode, with_clipped=False):
    """Map to [0, 1] (float32): 'none' clips (the original's behaviour), 'minmax' scales min..max,
    'percentile' scales the 0.5th percentile .. the 99.5th percentile of the foreground and clips. Computed in
    float32 on a quarter of the values, so any finite input gives a finite result and only one float32 copy of the
    volume is made. with_clipped: also return the fraction of voxels outside the window (clipped)."""
    low, high = intensity_window(data, mode)
    out = np.multiply(data, np.float32(0.25), dtype=np.float32)  # a quarter: no difference overflows float32
    low4 = np.float32(low) * np.float32(0.25)
    out -= low4
    out /= np.float32(high) * np.float32(0.25) - low4
    clipped = np.count_nonzero(out < 0) + np.count_nonzero(out > 1) if with_clipped else 0
    np.clip(out, 0.0, 1.0, out=out)
    return (out, clipped / max(out.size, 1)) if with_clipped else out


class VolumeReport(NamedTuple):
    """What loading a volume found beside the volume itself."""

    raw_range: Tuple[float, float]  # the input's min and max
    clipped: float  # fraction of voxels --normalize clipped to 0 or 1
    touching: Tuple[Tuple[str, int], ...]  # (face, voxels) of every grid face the brain touches


def touching_faces(volume, axis_codes=None, threshold=TOUCH_THRESHOLD, fraction=TOUCH_FRACTION):
    """((face, voxels), ...) of the faces of [X, Y, Z] `volume` on which more than `fraction` of the voxels are
    above `threshold` x the volume's maximum (the brain touches the face, or is cut by it). Faces are named from
    the axis codes (nibabel's, e.g. ('R', 'A', 'S')) when known, else by array index."""
    peak = float(volume.max())
    found = []
    if peak <= 0:
        return ()
    for axis in range(3):
        for end in (0, -1):
            face = np.take(volume, end, axis=axis)
            count = int(np.count_nonzero(face > threshold * peak))
            if count > fraction * face.size:
                found.append((_face_name(axis, end, axis_codes), count))
    return tuple(found)


def _face_name(axis, end, axis_codes):
    index = f"{'xyz'[axis]} = {0 if end == 0 else 'max'}"
    code = axis_codes[axis] if axis_codes and axis_codes[axis] in FACE_NAMES else None
    return f"{FACE_NAMES[code][0 if end == 0 else 1]} face ({index})" if code else f"face {index}"


def load_volume(path, *, base_size=(5, 6, 7), img_shape=None, voxel_size=None, normalize="none",
                max_voxels=DEFAULT_MAX_VOXELS):
    """A checked float32 [X, Y, Z] volume in [0, 1] and its VolumeReport; DataError if bad, or when --normalize
    clips more than MAX_CLIPPED of its voxels.

    With img_shape and voxel_size the volume is resampled onto that grid (needs an affine)."""
    data, affine = read_volume(path, max_voxels)
    data = check_volume(path, data)
    raw_range = (float(data.min()), float(data.max()))
    if img_shape is not None:
        if affine is None:
            raise DataError(path, "has no affine (.npz without 'affine'): cannot resample")
        if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            raise DataError(path, "its affine is not finite or is singular: cannot resample")
        if _zero_pixdim(path):
            raise DataError(path, "its header gives no voxel size (pixdim 0): cannot resample; fix the header")
        data = resample_to_grid(data, affine, img_shape, voxel_size)
    check_shape(path, data.shape, base_size)
    try:
        data, clipped = normalize_intensity(data, normalize, with_clipped=True)
    except ValueError as err:
        raise DataError(path, str(err)) from None
    if not np.isfinite(data).all():
        raise DataError(path, "resampling or --normalize gave NaN or Inf values (extreme input values?)")
    if clipped > MAX_CLIPPED:
        raise DataError(path, f"--normalize {normalize} clips {100 * clipped:.0f}% of its voxels to 0 or 1 (values "
                              f"{raw_range[0]:.4g} .. {raw_range[1]:.4g}): nearly all of the volume would be lost; "
                              f"use --normalize percentile")
    codes = ("R", "A", "S") if img_shape is not None else _axis_codes(affine)
    return data, VolumeReport(raw_range, clipped, touching_faces(data, codes))


def _axis_codes(affine):
    if affine is None or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        return None
    return nib.aff2axcodes(affine)


def _zero_pixdim(path) -> bool:
    """True for a NIfTI header without an sform whose voxel sizes are 0 (nibabel then reads them as 1 mm)."""
    if volume_suffix(path) == ".npz":
        return False
    header_class = type(nib.load(str(path)).header)
    with nib.openers.ImageOpener(str(path)) as f:
        raw = header_class.from_fileobj(f, check=False)  # as stored: nibabel's check would set 0 to 1
    return int(raw["sform_code"]) == 0 and bool(np.any(np.asarray(raw["pixdim"][1:4]) == 0))


def describe_touching(path, touching) -> str:
    """One warning line for a volume whose brain touches faces of the grid, with the preprocessing it needs."""
    faces = ", ".join(f"{face}: {count} voxels" for face, count in touching)
    return (f"warning: {path}: the brain touches the grid's {faces} (voxels above {TOUCH_THRESHOLD:.0%} of the "
            f"maximum): it is cut or off-centre; skull-strip and centre (register) the scans first, e.g. with "
            f"dataset_tool.py prepare")


def _load_or_error(path, **kwargs):
    """(volume, VolumeReport, None) or (None, None, problem): workers never raise."""
    try:
        return (*load_volume(path, **kwargs), None)
    except DataError as err:
        return None, None, err.problem
    except Exception as err:  # pylint: disable=broad-except; any reader failure is a bad file
        return None, None, DataError(path, f"unreadable ({type(err).__name__}: {err})").problem


def iter_loaded_volumes(paths, workers=1, **kwargs):
    """Yield (path, volume, VolumeReport, problem or None) in the order of paths, loading with N processes."""
    load = functools.partial(_load_or_error, **kwargs)
    if workers <= 1:
        for path in paths:
            yield (path, *load(path))
        return
    # spawn: the parent may already run TensorFlow, which does not survive fork.
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for path, result in zip(paths, pool.map(load, paths)):
            yield (path, *result)
    finally:  # also when the consumer stops early: drop what is not started yet
        pool.shutdown(wait=True, cancel_futures=True)
