"""The MNI152-based demo dataset: distinct, brain-shaped, deterministic, cached atomically."""
import time

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tf3dstylegan.data import demo
from tf3dstylegan.data.nifti import grid_affine
from tf3dstylegan.data.records import dataset_info, read_volumes

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
def test_default_2mm_demo_builds_quickly(tmp_path):
    start = time.perf_counter()
    path = demo.demo_dataset(voxel_size=2.0, cache_dir=tmp_path)
    seconds = time.perf_counter() - start
    info = dataset_info(path)
    assert info.img_shape == (80, 96, 112) and info.num_volumes == demo.DEFAULT_SUBJECTS
    assert seconds < 45.0, f"building the default demo took {seconds:.1f} s"
