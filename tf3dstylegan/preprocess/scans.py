"""Reading the inputs of `prepare`: scans (.nii, .nii.gz, .mgz, .npz with an affine) and FreeSurfer subject
folders (`mri/brainmask.mgz` or `mri/norm.mgz`, with `mri/transforms/talairach.xfm` when present)."""
import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np

from tf3dstylegan.data.volumes import DEFAULT_MAX_VOXELS, DataError, check_claimed_size, check_volume, read_volume

SCAN_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".npz")
FREESURFER_BRAINS = ("mri/brainmask.mgz", "mri/norm.mgz")
TALAIRACH = "mri/transforms/talairach.xfm"
MIN_FIELD_OF_VIEW_MM = 60.0  # a head scan covers at least this much along every axis
MIN_AXIS_VOXELS = 16


@dataclasses.dataclass(frozen=True)
class Subject:
    stem: str  # output name: the file name without its suffix, or the FreeSurfer folder's name
    path: str  # the scan file or the FreeSurfer subject folder
    freesurfer: bool = False


def scan_suffix(path) -> str:
    name = Path(path).name.lower()
    return next((s for s in SCAN_SUFFIXES if name.endswith(s)), "")


def freesurfer_brain(folder):
    """The brain volume file of a FreeSurfer subject folder, None if it is not one."""
    return next((Path(folder) / f for f in FREESURFER_BRAINS if (Path(folder) / f).is_file()), None)


def list_subjects(indir):
    """(subjects sorted by stem, other entries ignored) of an input folder; DataError for no subject or two
    inputs with one stem."""
    indir = Path(indir)
    if not indir.is_dir():
        raise DataError(indir, "not a folder")
    subjects, ignored = [], []
    for entry in sorted(p for p in indir.iterdir() if not p.name.startswith(".")):
        if entry.is_dir() and freesurfer_brain(entry) is not None:
            subjects.append(Subject(entry.name, str(entry), True))
        elif entry.is_file() and scan_suffix(entry):
            subjects.append(Subject(entry.name[:-len(scan_suffix(entry))], str(entry)))
        else:
            ignored.append(entry.name)
    if not subjects:
        raise DataError(indir, "no scans (.nii, .nii.gz, .mgz, .npz) and no FreeSurfer subject folders "
                               f"({', '.join(FREESURFER_BRAINS)})")
    stems = {}
    for subject in subjects:
        if subject.stem in stems:
            raise DataError(subject.path, f"has the same name as {stems[subject.stem]}; outputs would collide")
        stems[subject.stem] = subject.path
    return subjects, ignored


def check_head(path, data, affine):
    """DataError unless a 3-D volume with a usable affine and a field of view the size of a head."""
    data = check_volume(path, data)
    if affine is None:
        raise DataError(path, "has no affine ('affine' array in the .npz): cannot place it in space")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(path, "its affine is not finite or is singular")
    fov = np.multiply(data.shape, nib.affines.voxel_sizes(affine))
    if min(data.shape) < MIN_AXIS_VOXELS or fov.min() < MIN_FIELD_OF_VIEW_MM:
        raise DataError(path, f"shape {data.shape} ({'x'.join(f'{f:.0f}' for f in fov)} mm) is not a 3-D head scan "
                              f"(needs >= {MIN_AXIS_VOXELS} voxels and {MIN_FIELD_OF_VIEW_MM:g} mm per axis)")
    if float(data.max()) <= float(data.min()):
        raise DataError(path, f"empty volume: every voxel is {float(data.min()):g}")
    return data


def check_header(subject, max_voxels=DEFAULT_MAX_VOXELS):
    """DataError for a subject whose file header already shows a bad input (unreadable, not 3-D, too small,
    too large), before any data is read."""
    path = freesurfer_brain(subject.path) if subject.freesurfer else Path(subject.path)
    if scan_suffix(path) == ".npz":
        return  # read_volume checks the array's header before reading it
    try:
        header = nib.load(str(path)).header
        shape, zooms = header.get_data_shape(), header.get_zooms()
    except Exception as err:  # pylint: disable=broad-except; nibabel's errors for a bad header vary
        raise DataError(path, f"unreadable or truncated file ({type(err).__name__}: {err})") from None
    check_claimed_size(path, shape, max_voxels)
    shape = tuple(shape[:3]) if len(shape) > 3 and all(n == 1 for n in shape[3:]) else tuple(shape)
    fov = np.multiply(shape, zooms[:len(shape)]) if len(shape) == 3 else np.zeros(1)
    if len(shape) != 3 or min(shape) < MIN_AXIS_VOXELS or fov.min() < MIN_FIELD_OF_VIEW_MM:
        raise DataError(path, f"shape {shape} is not a 3-D head scan (needs >= {MIN_AXIS_VOXELS} voxels and "
                              f"{MIN_FIELD_OF_VIEW_MM:g} mm per axis)")


def read_scan(path, max_voxels=DEFAULT_MAX_VOXELS):
    """(data [X, Y, Z] float32, 4x4 voxel -> mm affine) of a scan file, checked; DataError if bad."""
    if Path(path).name.lower().endswith(".mgz"):
        try:
            image = nib.load(str(path))
            check_claimed_size(path, image.header.get_data_shape(), max_voxels)
            data, affine = np.asarray(image.get_fdata(dtype=np.float32)), np.asarray(image.affine, np.float64)
        except DataError:
            raise
        except Exception as err:  # pylint: disable=broad-except; nibabel's errors for a bad .mgz vary
            raise DataError(path, f"unreadable or truncated file ({type(err).__name__}: {err})") from None
    else:
        data, affine = read_volume(path, max_voxels)
    return check_head(path, data, affine), affine


def read_talairach(path):
    """4x4 scanner RAS -> MNI305 matrix of a FreeSurfer talairach.xfm (MNI transform file, one linear part)."""
    text = Path(path).read_text(errors="replace").replace(";", " ")
    try:
        numbers = [float(v) for v in text.split("Linear_Transform =", 1)[1].split()[:12]]
    except (IndexError, ValueError):
        raise DataError(path, "not an MNI transform file with a Linear_Transform") from None
    if len(numbers) != 12 or not np.isfinite(numbers).all():
        raise DataError(path, "its Linear_Transform does not hold 12 numbers")
    return np.vstack([np.reshape(numbers, (3, 4)), [0.0, 0.0, 0.0, 1.0]])


def read_freesurfer(folder, max_voxels=DEFAULT_MAX_VOXELS):
    """(brain data, affine, talairach 4x4 or None) of a FreeSurfer subject folder."""
    data, affine = read_scan(freesurfer_brain(folder), max_voxels)
    xfm = Path(folder) / TALAIRACH
    return data, affine, read_talairach(xfm) if xfm.is_file() else None
