"""The MNI152-based demo dataset: distinct, brain-shaped, deterministic, cached atomically; the
conditional variant's covariates and their known effects."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tf3dstylegan.data import anatomy, demo, read_labels
from tf3dstylegan.data.nifti import grid_affine
from tf3dstylegan.data.records import dataset_info, read_volumes

DATA = Path(__file__).resolve().parent / "data"
VOXEL = 4.0  # 40 x 48 x 56: the same recipe as 2 mm and 1 mm, small enough for unit tests


@pytest.fixture(name="demo_dir", scope="module")
def fixture_demo_dir(tmp_path_factory):
    return demo.demo_dataset(voxel_size=VOXEL, num_subjects=4, seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def template_mask_on_grid(img_shape, voxel_size):
    """The template's brain mask on the demo grid, without any random transform."""
    image = nib.load(str(demo.template_path()))
    brain = image.get_fdata() > 0
    corners = np.argwhere(brain)
    centre = (image.affine @ np.append((corners.min(0) + corners.max(0)) / 2.0, 1.0))[:3]
    grid_to_world = grid_affine(img_shape, voxel_size)
    grid_to_world[:3, 3] += centre
    to_template = np.linalg.inv(image.affine) @ grid_to_world
    return ndimage.affine_transform(brain.astype(np.float32), to_template[:3, :3], to_template[:3, 3],
                                    output_shape=img_shape, order=1) > 0.5


def test_subjects_are_distinct_and_brain_shaped(demo_dir):
    info = dataset_info(demo_dir)
    assert info.img_shape == (40, 48, 56) and info.num_volumes == 4
    volumes = np.stack(list(read_volumes(demo_dir)))[..., 0]
    assert volumes.min() >= 0.0 and volumes.max() <= 1.0
    template = template_mask_on_grid(info.img_shape, VOXEL)
    for volume in volumes:
        mask = volume > 0.05
        dice = 2 * np.sum(mask & template) / (mask.sum() + template.sum())
        assert dice > 0.85, dice
    for i in range(4):
        for j in range(i):
            assert np.mean(np.abs(volumes[i] - volumes[j])) > 0.01


def test_nifti_copies_match_records_and_share_the_grid(demo_dir):
    volumes = list(read_volumes(demo_dir))
    image = nib.load(str(demo_dir / "nifti" / "subject_000.nii.gz"))
    np.testing.assert_allclose(image.affine, grid_affine((40, 48, 56), VOXEL))
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), volumes[0][..., 0])
    assert len(list((demo_dir / "nifti").glob("*.nii.gz"))) == 4


def test_deterministic_from_seed_and_cached(tmp_path, demo_dir):
    again = demo.demo_dataset(voxel_size=VOXEL, num_subjects=4, seed=0, cache_dir=tmp_path)
    for a, b in zip(read_volumes(demo_dir), read_volumes(again), strict=True):
        np.testing.assert_array_equal(a, b)
    stamp = next(again.glob("*.tfrecords")).stat().st_mtime_ns
    assert demo.demo_dataset(voxel_size=VOXEL, num_subjects=4, seed=0, cache_dir=tmp_path) == again
    assert next(again.glob("*.tfrecords")).stat().st_mtime_ns == stamp
    other = demo.demo_dataset(voxel_size=VOXEL, num_subjects=2, seed=1, cache_dir=tmp_path)
    assert not np.array_equal(next(read_volumes(other)), next(read_volumes(demo_dir)))


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    calls = []

    def failing_subject(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros(demo.demo_shape(VOXEL), np.float32)

    monkeypatch.setattr(demo, "make_subject", failing_subject)
    with pytest.raises(KeyboardInterrupt):
        demo.demo_dataset(voxel_size=VOXEL, num_subjects=3, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_from_environment_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TF3DSTYLEGAN_CACHE", str(tmp_path / "env"))
    assert demo.default_cache_dir() == tmp_path / "env"
    with pytest.raises(ValueError, match="does not fit|does not divide"):
        demo.demo_shape(3.0)
    monkeypatch.setattr(demo, "TEMPLATE_FILE", ("datasets", "data", "absent.nii.gz"))
    with pytest.raises(RuntimeError, match="MNI152 template missing"):
        demo.template_path()
    monkeypatch.setattr(demo, "TEMPLATE_PACKAGE", "no_such_package_xyz")
    with pytest.raises(RuntimeError, match="pip install nilearn"):
        demo.template_path()


@pytest.mark.slow
def test_default_2mm_demo_builds(tmp_path):
    path = demo.demo_dataset(voxel_size=2.0, cache_dir=tmp_path)
    info = dataset_info(path)
    assert info.img_shape == (80, 96, 112) and info.num_volumes == demo.DEFAULT_SUBJECTS


def test_unconditional_demo_is_unchanged(demo_dir):
    """The cache key and the stored volumes of the plain demo are those from before covariates existed."""
    assert demo_dir.name == "mni152-demo-v1-4mm-n4-seed0"
    assert not list(demo_dir.glob("*.labels")) and "covariates" not in (demo_dir / "demo.json").read_text()
    # Block means (4x4x4) of the four volumes as the code before covariates made them (sha256 8679e9fd39ce... of
    # the float32 records on the machine that stored them). Another SciPy or NumPy build may round the trilinear
    # resampling differently (~1e-6 per voxel); a change of the recipe moves block means by more than 1e-2.
    volumes = np.stack(list(read_volumes(demo_dir)))[..., 0]
    blocks = volumes.reshape(4, 10, 4, 12, 4, 14, 4).mean(axis=(2, 4, 6))
    with np.load(DATA / "demo-4mm-n4-seed0-blocks.npz") as stored:
        np.testing.assert_allclose(blocks, stored["block_means"], atol=1e-4)


def test_age_enlarges_the_ventricles_of_the_same_subject():
    shape = demo.demo_shape(VOXEL)
    volumes = {(age, sex): demo.make_subject(np.random.default_rng([0, 1]), shape, VOXEL, {"age": age, "sex": sex})
               for age in (50, 70, 90) for sex in "FM"}
    for sex in "FM":
        sizes = [anatomy.ventricle_volume(volumes[age, sex], VOXEL) for age in (50, 70, 90)]
        assert sizes[0] < sizes[1] < sizes[2], sizes
        assert 1.3 < sizes[2] / sizes[0] < 2.5, sizes  # documented: about +70 % from 50 to 90 years
    brain = {sex: np.sum(volumes[70, sex] > 0.05) for sex in "FM"}
    assert 1.05 < brain["M"] / brain["F"] < 1.25, brain  # 4 % per axis: about 13 % in volume
    plain = demo.make_subject(np.random.default_rng([0, 1]), shape, VOXEL)
    assert np.corrcoef(plain.ravel(), volumes[50, "F"].ravel())[0, 1] > 0.9  # the same random anatomy



def test_partial_ventricle_volume_counts_each_voxel_by_its_csf_fraction():
    shape, voxel = (20, 24, 28), 8.0
    inside = anatomy.measure_mask(shape, voxel)                    # [X, Y, Z] bool, 220 voxels
    volume = np.ones(shape, np.float32)                             # white matter everywhere
    where = np.argwhere(inside)
    volume[tuple(where[:10].T)] = anatomy.CSF_INTENSITY             # 10 pure CSF voxels
    volume[tuple(where[10:14].T)] = (1 + anatomy.CSF_INTENSITY) / 2  # 4 half CSF
    volume[tuple(where[14:16].T)] = 0.0                              # darker than CSF: counted once
    volume[~inside] = 0.0                                            # outside the ellipsoid: not counted
    assert anatomy.partial_ventricle_volume(volume, voxel) == pytest.approx((10 + 2 + 2) * voxel ** 3, rel=1e-5)
    assert anatomy.partial_ventricle_volume(volume[..., np.newaxis], voxel) == pytest.approx(14 * voxel ** 3, rel=1e-5)


def test_partial_ventricle_volume_sees_age_at_8_mm():
    shape = demo.demo_shape(8.0)
    volumes = [demo.make_subject(np.random.default_rng([0, 1]), shape, 8.0, {"age": age, "sex": "F"})
               for age in (50, 70, 90)]
    sizes = [anatomy.partial_ventricle_volume(v, 8.0) / 1000.0 for v in volumes]       # ml
    assert sizes[0] < sizes[1] < sizes[2] and 3.0 < sizes[2] - sizes[0] < 15.0, sizes  # documented: 6.0-8.5 ml

def test_conditional_demo_has_covariates_with_a_known_age_effect(tmp_path):
    path = demo.demo_dataset(voxel_size=VOXEL, num_subjects=12, cache_dir=tmp_path, conditional=True)
    assert path.name == "mni152-demo-conditional-v1.1-4mm-n12-seed0"
    encoding, labels = read_labels(path)
    assert encoding.names == ("age", "sex") and labels.shape == (12, 3) and dataset_info(path).label_size == 3
    covariates = [encoding.decode(row) for row in labels]
    assert covariates == [pytest.approx(demo.subject_covariates(0, i)) for i in range(12)]
    table = (path / "participants.tsv").read_text().splitlines()
    assert table[0] == "participant_id\tage\tsex" and table[1].startswith("subject_000\t")
    ages = np.array([c["age"] for c in covariates])
    sizes = np.array([anatomy.ventricle_volume(v, VOXEL) for v in read_volumes(path)]) / 1000.0  # ml
    slope = np.polyfit(ages, sizes, 1)[0]
    assert 0.05 < slope < 0.4, slope  # ml per year; documented: about 0.2 (0.26 measured here)


@pytest.mark.slow
def test_demo_subject_renders_a_record_and_its_counterfactuals(tmp_path):
    path = demo.demo_dataset(voxel_size=VOXEL, num_subjects=3, cache_dir=tmp_path, conditional=True)
    for i, record in enumerate(read_volumes(path)):
        # the same computation as the build: equal up to the records' float32 storage
        np.testing.assert_allclose(demo.demo_subject(i, voxel_size=VOXEL), record[..., 0], atol=1e-6)
    own = demo.subject_covariates(0, 1)
    older = demo.demo_subject(1, {**own, "age": min(90.0, own["age"] + 20)}, voxel_size=VOXEL)
    younger = demo.demo_subject(1, {**own, "age": max(50.0, own["age"] - 20)}, voxel_size=VOXEL)
    assert anatomy.ventricle_volume(younger, VOXEL) < anatomy.ventricle_volume(older, VOXEL)
    assert np.corrcoef(younger.ravel(), older.ravel())[0, 1] > 0.9  # the same subject
    for covariates, problem in [({"age": 70}, "demo covariates are age and sex"),
                                ({"age": float("nan"), "sex": "F"}, "finite"), ({"age": 70, "sex": "X"}, "sex")]:
        with pytest.raises(ValueError, match=problem):
            demo.demo_subject(0, covariates, voxel_size=VOXEL)
