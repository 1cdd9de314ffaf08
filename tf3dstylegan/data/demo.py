"""A built-in demo dataset: synthetic subjects made from the MNI152 T1 template shipped in nilearn.

Each subject is the skull-stripped 1 mm template seen through a small random affine and a random
smooth deformation, with a random gamma, bias field, contrast and noise, on the package's centred
RAS grid (tf3dstylegan.data.nifti) of 160 x 192 x 224 mm. Subject i depends only on (seed, i).
The conditional variant gives subject i an age and a sex (subject_covariates) and their known
effects on anatomy (tf3dstylegan.data.anatomy); its random anatomy is that of unconditional subject i, and
demo_subject renders it at any covariates (the ground truth of a counterfactual).
"""
import functools
import importlib.resources
import os
import shutil
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tf3dstylegan.config import resolution_log2_for_shape
from tf3dstylegan.data import anatomy
from tf3dstylegan.data.nifti import grid_affine, save_volume
from tf3dstylegan.data.records import RecordWriter
from tf3dstylegan.io import write_json_atomic, write_text_atomic
from tf3dstylegan.io.files import cache_dir as package_cache_dir

TEMPLATE_PACKAGE = "nilearn"
TEMPLATE_FILE = ("datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
FIELD_OF_VIEW_MM = (160.0, 192.0, 224.0)
BASE_SIZE = (5, 6, 7)
DEFAULT_SUBJECTS = 32
VERSION = 1  # bump when the recipe changes: it is part of the cache folder name
CONDITIONAL_VERSION = 1  # the same for the covariates and their effects (anatomy)
# Recipe (uniform ranges unless said otherwise).
MAX_ROTATION_DEG = 4.0
MAX_SCALE = 0.06
MAX_SHIFT_MM = 3.0
DEFORMATION_MM = 2.5  # std of each coefficient of the smooth displacement
DEFORMATION_FREQS = 4
MAX_LOG_GAMMA = 0.2
BIAS_STD = 0.06
MAX_CONTRAST = 0.08
NOISE_STD = 0.01


def template_path() -> Path:
    """The MNI152 template file inside the installed nilearn; RuntimeError if unavailable."""
    try:
        path = importlib.resources.files(TEMPLATE_PACKAGE).joinpath(*TEMPLATE_FILE)
    except ModuleNotFoundError:
        raise RuntimeError("the demo dataset needs the MNI152 template shipped with nilearn: "
                           "pip install nilearn") from None
    if not path.is_file():
        raise RuntimeError(f"{path}: MNI152 template missing from the installed nilearn; reinstall nilearn")
    return Path(str(path))


def default_cache_dir() -> Path:
    """$TF3DSTYLEGAN_CACHE, else ~/.cache/tf3dstylegan."""
    return package_cache_dir()


def demo_shape(voxel_size):
    """(X, Y, Z) of the demo grid: 80x96x112 at 2 mm, 160x192x224 at 1 mm, 40x48x56 at 4 mm."""
    shape = tuple(int(round(f / voxel_size)) for f in FIELD_OF_VIEW_MM)
    if not np.allclose(np.multiply(shape, voxel_size), FIELD_OF_VIEW_MM):
        raise ValueError(f"voxel size {voxel_size} mm does not divide the {FIELD_OF_VIEW_MM} mm field of view")
    resolution_log2_for_shape(shape, BASE_SIZE)  # ValueError unless base_size * 2**k
    return shape


@functools.lru_cache(maxsize=4)
def load_template(voxel_size, eroded=False):
    """(template [x, y, z] float32 in [0, 1] pre-smoothed for voxel_size, affine, brain centre (mm));
    eroded=True gives the template with its CSF spaces widened (anatomy.erode_csf) before smoothing."""
    image = nib.load(str(template_path()))
    data = image.get_fdata(dtype=np.float32)
    brain = np.argwhere(data > 0)  # the template is skull-stripped
    data = np.clip(data / np.percentile(data[data > 0], 99.5), 0.0, 1.0)
    if eroded:
        data = anatomy.erode_csf(data)
    zooms = np.sqrt(np.sum(image.affine[:3, :3] ** 2, axis=0))
    sigma = np.maximum(0.0, (voxel_size / zooms - 1.0) / 2.0)  # anti-aliasing
    if np.any(sigma > 0):
        data = ndimage.gaussian_filter(data, sigma)
    box_centre = (brain.min(0) + brain.max(0)) / 2.0
    centre = (image.affine @ np.append(box_centre, 1.0))[:3]
    return data.astype(np.float32), np.asarray(image.affine), centre


def smooth_field(rng, img_shape, num_freqs, std):
    """A random smooth scalar field [X, Y, Z]: a sum of separable cosines with decaying amplitudes."""
    freqs = np.arange(1, num_freqs + 1)
    bases = [np.cos(np.pi * np.outer((np.arange(n) + 0.5) / n, freqs)) for n in img_shape]  # [n, F]
    decay = 1.0 / (freqs[:, None, None] + freqs[None, :, None] + freqs[None, None, :] - 2.0)
    coeffs = rng.normal(0.0, std, (num_freqs,) * 3) * decay  # [F, F, F]
    field = np.tensordot(bases[0], coeffs, axes=(1, 0))  # [X, F, F]
    field = np.tensordot(field, bases[1], axes=(1, 1))  # [X, F, Y]
    field = np.tensordot(field, bases[2], axes=(1, 1))  # [X, Y, Z]
    return field.astype(np.float32)


def make_subject(rng, img_shape, voxel_size, covariates=None) -> np.ndarray:
    """One synthetic subject, float32 [X, Y, Z] in [0, 1] on grid_affine(img_shape, voxel_size).

    covariates {"age": years, "sex": "F" | "M"} add their known effects (tf3dstylegan.data.anatomy);
    the random draws are the same with and without them."""
    template, template_affine, centre = load_template(voxel_size)
    axes = [voxel_size * (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) for n in img_shape]  # mm
    positions = [axes[k].reshape([-1 if a == k else 1 for a in range(3)]) for k in range(3)]
    linear = (Rotation.from_euler("xyz", rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3), degrees=True)
              .as_matrix() @ np.diag(1.0 + rng.uniform(-MAX_SCALE, MAX_SCALE, 3)))
    if covariates is not None:
        positions = anatomy.magnify_ventricles(positions, covariates["age"])
        linear = linear / anatomy.head_scale(covariates["sex"])
    shift = rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 3) + centre
    world_to_voxel = np.linalg.inv(template_affine)
    matrix = world_to_voxel[:3, :3] @ linear  # grid mm -> template voxels
    offset = world_to_voxel[:3, :3] @ shift + world_to_voxel[:3, 3]
    displacement = [smooth_field(rng, img_shape, DEFORMATION_FREQS, DEFORMATION_MM) for _ in range(3)]
    coords = np.empty((3, *img_shape), np.float32)
    for c in range(3):
        coords[c] = offset[c] + sum(world_to_voxel[c, k] * displacement[k] for k in range(3))
        for k in range(3):
            coords[c] += matrix[c, k] * positions[k]
    volume = ndimage.map_coordinates(template, coords, order=1, mode="constant", cval=0.0, output=np.float32)
    widening = 0.0 if covariates is None else anatomy.sulcal_widening(covariates["age"])
    if widening > 0.0:
        eroded = ndimage.map_coordinates(load_template(voxel_size, eroded=True)[0], coords, order=1,
                                         mode="constant", cval=0.0, output=np.float32)
        volume = (1.0 - widening) * volume + widening * eroded
    brain = volume > 0.02
    volume = volume ** np.exp(rng.uniform(-MAX_LOG_GAMMA, MAX_LOG_GAMMA))
    volume *= np.exp(smooth_field(rng, img_shape, 2, BIAS_STD)) * (1.0 + rng.uniform(-MAX_CONTRAST, MAX_CONTRAST))
    volume += brain * rng.normal(0.0, NOISE_STD, img_shape).astype(np.float32)
    return np.clip(volume, 0.0, 1.0).astype(np.float32)


def subject_covariates(seed, index) -> dict:
    """The conditional demo's covariates of subject `index`: age uniform in anatomy.AGE_RANGE (0.1 year
    steps) and sex F or M with equal odds, from their own random stream (seed, index, 1)."""
    rng = np.random.default_rng([seed, index, 1])
    return {"age": round(float(rng.uniform(*anatomy.AGE_RANGE)), 1), "sex": anatomy.SEXES[int(rng.integers(2))]}


def demo_subject(index, covariates=None, voxel_size=2.0, seed=0) -> np.ndarray:
    """The ground truth of a counterfactual: subject `index` of the conditional demo with this seed (the records
    hold indices 0 .. num_subjects - 1; any other index is a subject no model was trained on) rendered at
    `covariates` ({"age": years, "sex": "F" | "M"}; default its own, subject_covariates(seed, index)): its
    random anatomy with the covariates' known effects. float32 [X, Y, Z] in [0, 1]; ValueError for bad covariates."""
    covariates = subject_covariates(seed, index) if covariates is None else dict(covariates)
    if sorted(covariates) != ["age", "sex"]:
        raise ValueError(f"demo covariates are age and sex, got {', '.join(sorted(covariates)) or 'none'}")
    if not np.isfinite(covariates["age"]):
        raise ValueError(f"age must be a finite number of years, got {covariates['age']!r}")
    anatomy.head_scale(covariates["sex"])  # ValueError for an unknown sex
    return make_subject(np.random.default_rng([seed, index]), demo_shape(voxel_size), voxel_size, covariates)


def demo_name(voxel_size, num_subjects, seed, conditional=False) -> str:
    kind = f"conditional-v{VERSION}.{CONDITIONAL_VERSION}" if conditional else f"v{VERSION}"
    return f"mni152-demo-{kind}-{voxel_size:g}mm-n{num_subjects}-seed{seed}"


def write_covariates(outdir, name, covariates):
    """participants.tsv (participant_id = the NIfTI file's stem), labels.json and `<name>-rxx.labels`."""
    from tf3dstylegan.data.labels import LabelEncoding, write_labels  # pylint: disable=import-outside-toplevel

    lines = ["participant_id\tage\tsex"] + [f"subject_{i:03d}\t{c['age']:g}\t{c['sex']}"
                                          for i, c in enumerate(covariates)]
    write_text_atomic(Path(outdir) / "participants.tsv", "\n".join(lines) + "\n")
    encoding = LabelEncoding.fit(("age", "sex"), ("continuous", "categorical"), covariates,
                                 {"sex": anatomy.SEXES})
    write_labels(outdir, encoding.samples, encoding, name=name)


def build_demo(outdir, voxel_size=2.0, num_subjects=DEFAULT_SUBJECTS, seed=0, name=None, write_nifti=True,
               conditional=False):
    """Write subjects as `<outdir>/nifti/subject_NNN.nii.gz` and `<outdir>/<name>-rNN.tfrecords`;
    conditional adds each subject's age and sex effects and writes the covariates beside the records."""
    img_shape = demo_shape(voxel_size)
    outdir = Path(outdir)
    name = name or outdir.name
    covariates = [subject_covariates(seed, i) for i in range(num_subjects)] if conditional else None
    with RecordWriter(outdir, resolution_log2_for_shape(img_shape, BASE_SIZE), name=name) as writer:
        for i in range(num_subjects):
            volume = (make_subject(np.random.default_rng([seed, i]), img_shape, voxel_size) if covariates is None
                      else demo_subject(i, covariates[i], voxel_size, seed))
            writer.write(volume)
            if write_nifti:
                save_volume(outdir / "nifti" / f"subject_{i:03d}.nii.gz", volume, voxel_size)
        if conditional:
            write_covariates(outdir, name, covariates)
    info = {"source": "MNI152 ICBM 2009a symmetric T1 (nilearn)", "version": VERSION, "seed": seed,
            "num_subjects": num_subjects, "voxel_size": voxel_size, "img_shape": list(img_shape),
            "affine": grid_affine(img_shape, voxel_size).tolist()}
    if conditional:
        info["covariates"] = {"version": CONDITIONAL_VERSION, "age": f"years, uniform in {anatomy.AGE_RANGE}",
                              "sex": "F or M", "effects": "tf3dstylegan.data.anatomy"}
    write_json_atomic(outdir / "demo.json", info)
    return outdir


def demo_dataset(voxel_size=2.0, num_subjects=DEFAULT_SUBJECTS, seed=0, cache_dir=None, conditional=False) -> Path:
    """Path of the cached demo records folder, building it first if needed (atomically: in a
    temporary folder renamed at the end, so an interrupted build leaves no half cache).
    conditional: the variant with covariates age and sex (participants.tsv, labels.json and the
    labels file beside the records; effects in tf3dstylegan.data.anatomy)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = demo_name(voxel_size, num_subjects, seed, conditional)
    final = cache_dir / name
    if final.is_dir():
        return final
    demo_shape(voxel_size)  # fail early on a bad voxel size
    template_path()
    tmp = cache_dir / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build_demo(tmp, voxel_size, num_subjects, seed, name=name, conditional=conditional)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another process finishing first is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
