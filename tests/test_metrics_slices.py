"""Middle slices: sagittal fixes X, coronal fixes Y, axial fixes Z of [B, X, Y, Z, C] volumes."""
import numpy as np
import pytest

from tf3dstylegan.metrics import slices


def test_planes_fix_the_right_axis():
    x, y, z = np.meshgrid(np.arange(6), np.arange(8), np.arange(10), indexing="ij")
    coords = np.stack([x, y, z], -1)[None].repeat(2, 0)  # [2, X, Y, Z, 3]: channel c holds coordinate c
    planes = slices.plane_slices(coords)
    assert planes["sagittal"].shape == (2, 8, 10, 3) and (planes["sagittal"][..., 0] == 3).all()
    assert planes["coronal"].shape == (2, 6, 10, 3) and (planes["coronal"][..., 1] == 4).all()
    assert planes["axial"].shape == (2, 6, 8, 3) and (planes["axial"][..., 2] == 5).all()
    np.testing.assert_array_equal(planes["axial"][0, :, :, 0], x[:, :, 0])


def test_bad_input():
    with pytest.raises(ValueError, match="X, Y, Z"):
        slices.middle_slice(np.zeros((4, 4, 4, 1)), "axial")
    with pytest.raises(ValueError, match="plane"):
        slices.middle_slice(np.zeros((1, 4, 4, 4, 1)), "transverse")
