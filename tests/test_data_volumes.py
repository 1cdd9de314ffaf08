"""Reading, checking, resampling and normalising volumes; the NIfTI grid convention."""
import gzip

import nibabel as nib
import numpy as np
import pytest

from tf3dstylegan.data.nifti import grid_affine, save_volume
from tf3dstylegan.data.volumes import (DataError, load_volume, normalize_intensity, read_volume,
                                       resample_to_grid)

SHAPE = (12, 16, 20)
BASE = (3, 4, 5)


def save_nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else affine), str(path))
    return path


def assert_one_line_error(err, path):
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message, message


def test_grid_affine_is_ras_and_centred():
    affine = grid_affine(SHAPE, 2.0)
    assert np.allclose(np.diag(affine)[:3], 2.0)
    centre = affine @ np.append((np.array(SHAPE) - 1) / 2.0, 1.0)
    assert np.allclose(centre[:3], 0.0)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_save_volume_round_trip_leaves_no_temporary(tmp_path, name):
    volume = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    path = save_volume(tmp_path / name, volume[..., None], voxel_size=2.0)
    image = nib.load(str(path))
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), volume)
    np.testing.assert_allclose(image.affine, grid_affine(SHAPE, 2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_save_volume_rejects_bad_names_and_shapes(tmp_path):
    with pytest.raises(ValueError, match="must end with"):
        save_volume(tmp_path / "v.npy", np.zeros(SHAPE), 1.0)
    with pytest.raises(ValueError, match="expected a volume"):
        save_volume(tmp_path / "v.nii", np.zeros((*SHAPE, 2)), 1.0)


def test_reads_nifti_and_npz_alike(tmp_path):
    volume = np.random.default_rng(1).random(SHAPE, dtype=np.float32)
    save_nifti(tmp_path / "a.nii.gz", volume)
    np.savez(tmp_path / "b.npz", vol_data=volume[..., None])
    a, _ = load_volume(tmp_path / "a.nii.gz", base_size=BASE)
    b, _ = load_volume(tmp_path / "b.npz", base_size=BASE)
    np.testing.assert_array_equal(a, volume)
    np.testing.assert_array_equal(b, volume)


def _bad_inputs(tmp_path):
    good = np.random.default_rng(2).random(SHAPE, dtype=np.float32)
    save_nifti(tmp_path / "full.nii.gz", good)
    raw = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "notgzip.nii.gz").write_bytes(b"plain text, not gzip")
    (tmp_path / "text.nii").write_bytes(b"hello" * 100)
    (tmp_path / "notes.txt").write_text("not an image")
    np.savez(tmp_path / "nokey.npz", other=good)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    with gzip.open(tmp_path / "gz_of_text.nii.gz", "wb") as f:
        f.write(b"x" * 400)
    save_nifti(tmp_path / "flat.nii", good[..., 0])
    save_nifti(tmp_path / "rgb.nii", np.stack([good] * 3, -1))
    nan = good.copy()
    nan[1, 2, 3] = np.nan
    save_nifti(tmp_path / "nan.nii", nan)
    inf = good.copy()
    inf[0, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", vol_data=inf)
    save_nifti(tmp_path / "odd.nii", good[:11])
    save_nifti(tmp_path / "constant.nii", np.full(SHAPE, 3.0))
    return {
        "truncated.nii.gz": "unreadable", "notgzip.nii.gz": "unreadable", "text.nii": "unreadable",
        "notes.txt": "not an image file", "nokey.npz": "vol_data", "broken.npz": "unreadable",
        "gz_of_text.nii.gz": "unreadable", "flat.nii": "3-D", "rgb.nii": "3 channels",
        "nan.nii": "NaN or Inf", "inf.npz": "NaN or Inf", "odd.nii": "does not fit base_size",
        "constant.nii": "constant volume",
    }


def test_every_bad_input_gives_one_line_error_naming_the_file(tmp_path):
    for name, problem in _bad_inputs(tmp_path).items():
        with pytest.raises(DataError, match=problem) as err:
            load_volume(tmp_path / name, base_size=BASE, normalize="minmax")
        assert_one_line_error(err, tmp_path / name)


def test_resampling_reorients_to_ras(tmp_path):
    volume = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    las = np.diag([-2.0, 2.0, 2.0, 1.0])  # x runs right-to-left
    las[:3, 3] = [30.0, -10.0, 5.0]
    resampled = resample_to_grid(volume, las, SHAPE, 2.0)
    np.testing.assert_allclose(resampled, volume[::-1], atol=1e-5)


def test_resampling_centres_the_field_of_view_and_downsamples(tmp_path):
    volume = np.zeros((24, 32, 40), np.float32)
    volume[10:14, 14:18, 18:22] = 1.0  # a blob at the centre of the input field of view
    affine = np.eye(4)
    affine[:3, 3] = [100.0, -50.0, 7.0]  # far from the world origin
    path = save_nifti(tmp_path / "blob.nii.gz", volume, affine)
    out, report = load_volume(path, base_size=BASE, img_shape=SHAPE, voxel_size=2.0, normalize="minmax")
    assert out.shape == SHAPE and report.raw_range == (0.0, 1.0) and report.touching == ()
    peak = np.unravel_index(np.argmax(out), SHAPE)
    assert np.all(np.abs(np.array(peak) - (np.array(SHAPE) - 1) / 2) <= 1.0), peak


def test_npz_without_affine_cannot_be_resampled(tmp_path):
    np.savez(tmp_path / "v.npz", vol_data=np.ones((24, 32, 40)))
    with pytest.raises(DataError, match="no affine") as err:
        load_volume(tmp_path / "v.npz", base_size=BASE, img_shape=SHAPE, voxel_size=2.0)
    assert_one_line_error(err, tmp_path / "v.npz")


def test_normalisations():
    rng = np.random.default_rng(4)
    data = np.zeros(SHAPE, np.float32)
    data[2:10, 3:13, 4:16] = rng.normal(500.0, 50.0, (8, 10, 12))
    minmax = normalize_intensity(data, "minmax")
    assert minmax.min() == 0.0 and minmax.max() == 1.0
    percentile = normalize_intensity(data, "percentile")
    foreground = data > 0
    assert percentile.min() == 0.0 and percentile.max() == 1.0
    assert 0.004 < np.mean(percentile[foreground] == 1.0) < 0.02  # the top 0.5 % saturates
    np.testing.assert_array_equal(normalize_intensity(data / 1000.0, "none"), np.clip(data / 1000.0, 0, 1))
    with pytest.raises(ValueError, match="normalize must be"):
        normalize_intensity(data, "zscore")


def test_read_volume_returns_affine(tmp_path):
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    save_nifti(tmp_path / "v.nii", np.ones(SHAPE), affine)
    _, read_affine = read_volume(tmp_path / "v.nii")
    np.testing.assert_allclose(read_affine, affine)


def test_claimed_size_is_checked_before_reading(tmp_path):
    nifti = save_nifti(tmp_path / "v.nii.gz", np.ones(SHAPE))
    np.savez(tmp_path / "v.npz", vol_data=np.ones(SHAPE, np.float32))
    for path in (nifti, tmp_path / "v.npz"):
        with pytest.raises(DataError, match="header claims shape 12x16x20 = 3840 voxels") as err:
            read_volume(path, max_voxels=3839)
        assert_one_line_error(err, path)
        assert read_volume(path, max_voxels=3840)[0].shape == SHAPE  # a larger limit lets it through


@pytest.mark.parametrize("mode", ["minmax", "percentile"])
def test_extreme_float32_values_normalise_without_nan(tmp_path, mode):
    volume = np.random.default_rng(0).uniform(-3e38, 3e38, SHAPE).astype(np.float32)
    volume[0, 0, 0], volume[0, 0, 1] = np.finfo(np.float32).max, np.finfo(np.float32).min
    data, report = load_volume(save_nifti(tmp_path / "a.nii", volume), base_size=BASE, normalize=mode)
    assert np.isfinite(data).all() and data.min() == 0.0 and data.max() == 1.0
    assert report.raw_range == (float(np.finfo(np.float32).min), float(np.finfo(np.float32).max))
