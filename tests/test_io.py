"""Shared outputs: atomic files, middle slices, preview grids (with enlargement) and PNGs."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan import io


def decode_png(path):
    """TensorFlow's PNG decoder, independent of our encoder: [H, W] uint8."""
    return tf.io.decode_png(path.read_bytes(), channels=1).numpy()[..., 0]


def test_middle_slices_pick_the_centre_of_each_axis_with_z_up():
    volume = np.zeros((4, 6, 8), np.float32)
    volume[2, :, :] += 1   # sagittal plane x = 2
    volume[:, 3, :] += 2   # coronal plane y = 3
    volume[:, :, 4] += 4   # axial plane z = 4
    volume[2, 3, 7] = 100  # top of the middle column
    sagittal, coronal, axial = io.middle_slices(volume)
    assert io.PLANES == ("sagittal", "coronal", "axial")
    assert sagittal.shape == (8, 6) and coronal.shape == (8, 4) and axial.shape == (6, 4)
    assert sagittal[0, 3] == 100 and coronal[0, 2] == 100  # z = 7 is the first (top) row
    assert axial[0, 0] == 4 and axial[2, 0] == 4 + 2 and axial[2, 2] == 4 + 2 + 1 and axial[0, 2] == 4 + 1


def test_preview_grid_enlarges_small_volumes_and_decodes_independently(tmp_path):
    volumes = np.linspace(-1, 1, 3 * 4 * 6 * 8).reshape(3, 4, 6, 8, 1).astype(np.float32)
    scale = io.display_scale(volumes.shape[1:4])
    assert scale == 16  # the smaller slice side (6) enlarged to at least 96 px
    image = io.preview_grid(volumes, columns=2)
    tile_h, tile_w = 8 * scale, (6 + 4 + 4) * scale + 2 * io.GAP
    assert image.shape == (2 * tile_h + io.GAP, 2 * tile_w + io.GAP) and image.dtype == np.uint8
    assert image.max() > 200 and image[:tile_h, :tile_w].min() < 60
    path = tmp_path / "grid.png"
    io.write_png(path, image)
    np.testing.assert_array_equal(decode_png(path), image)
    assert os.listdir(tmp_path) == ["grid.png"]
    unscaled = io.preview_grid(volumes, columns=2, scale=1)
    np.testing.assert_array_equal(unscaled[:8, :6], image[:8 * scale:scale, :6 * scale:scale])


def test_plane_grid_places_volumes_and_blank_cells():
    volume = np.ones((4, 6, 8, 1), np.float32)
    grid = io.plane_grid([[None, volume], [volume, -volume]], "axial", scale=1)
    h, w = 6, 4  # axial: [Y, X]
    assert grid.shape == (2 * h + io.GAP, 2 * w + io.GAP)
    assert grid[:h, :w].max() == 0 and grid[:h, w + io.GAP:].min() == 255 and grid[h + io.GAP:, w + io.GAP:].max() == 0


def test_atomic_writes_leave_nothing_half_written(tmp_path):
    target = tmp_path / "a.json"
    io.write_json_atomic(target, {"x": 1})
    assert target.read_text().strip().startswith("{") and os.listdir(tmp_path) == ["a.json"]
    with pytest.raises(ValueError):
        io.write_json_atomic(target, {"x": float("nan")})  # never a NaN in a file
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "b.nii.gz") as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert sorted(os.listdir(tmp_path)) == ["a.json"] and "x" in target.read_text()


def test_atomic_write_does_not_follow_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out.txt.tmp").symlink_to(victim)  # the guessable name a plain write-then-rename would use
    io.write_text_atomic(tmp_path / "out.txt", "new")
    assert victim.read_text() == "keep me" and (tmp_path / "out.txt").read_text() == "new"
    assert not (tmp_path / "out.txt").is_symlink()
