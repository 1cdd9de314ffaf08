"""tf3dstylegan.preprocess: the LinkNet3d port against torch (tiny random-weight copy), deepbet's pre- and
post-processing, scan checks, QC numbers, and (slow) N4 and registration on small synthetic heads."""
import inspect

import nibabel as nib
import numpy as np
import pytest

from conftest import DATA
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.metrics import weights
from tf3dstylegan.preprocess import linknet, qc, scans, skullstrip, synthetic, template


@pytest.fixture(scope="module")
def tiny():
    """The tiny LinkNet3d (channels 4-8-12-16) read from its TorchScript file, and torch's outputs."""
    with np.load(DATA / "deepbet_tiny_outputs.npz") as f:
        return weights.read_network_weights("deepbet", DATA / "deepbet_tiny.pt"), dict(f)


def tiny_input():  # tests/data/deepbet_reference.py: INPUT_SEED 0, INPUT_SHAPE (64, 32, 64)
    return np.random.default_rng(0).normal(size=(1, 64, 32, 64, 1)).astype(np.float32)


def test_linknet_matches_torch_on_the_tiny_copy(tiny):
    tensors, reference = tiny
    model = linknet.build_linknet(tensors)
    with_maps = linknet.keras.Model(model.inputs, [model.output] + [model.get_layer(name).output
                                                                    for name in linknet.ENCODER_MAPS])
    probability, *maps = (np.asarray(out) for out in with_maps.predict_on_batch(tiny_input()))
    assert probability.shape == (1, 64, 32, 64, 2)
    np.testing.assert_allclose(probability.sum(-1), 1.0, atol=1e-5)
    # float32 convolutions in a different order than torch's: differences of a few 1e-6 measured
    np.testing.assert_allclose(probability[0, ..., 1].reshape(-1)[reference["sampled_index"]],
                               reference["sampled_probability"], atol=2e-5)
    scale = np.abs(reference["down3"]).max()
    np.testing.assert_allclose(maps[-1][0], reference["down3"], atol=2e-4 * scale)
    means = np.concatenate([m[0].mean(axis=(0, 1, 2)) for m in maps])
    np.testing.assert_allclose(means, reference["map_means"], atol=1e-4)


def test_linknet_is_keras_ops_only_and_checks_sizes():
    source = inspect.getsource(linknet)
    assert "tensorflow" not in source and "tf." not in source
    linknet.check_linknet_shape((64, 32, 96))
    with pytest.raises(ValueError, match="multiples of 32"):
        linknet.check_linknet_shape((64, 48, 64))


def test_resize_nearest_exact_is_torchs_rule():
    x = np.arange(5)[:, None, None] * np.ones((5, 2, 2))
    np.testing.assert_array_equal(skullstrip.resize_nearest_exact(x, (3, 2, 2))[:, 0, 0], [0, 2, 4])
    np.testing.assert_array_equal(skullstrip.resize_nearest_exact(x[:2], (5, 2, 2))[:, 0, 0], [0, 0, 1, 1, 1])


def test_normalize_is_deepbets():
    x = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32) * 100
    out = skullstrip.normalize(x, 10.0, 90.0)
    clipped = np.clip((x - 10) / 80, 0, 1)
    np.testing.assert_allclose(out, 0.226 * (clipped - clipped.mean()) / clipped.std(ddof=1) + 0.449, atol=1e-5)


class ThresholdNetwork:
    """A stand-in for deepbet's networks: 'brain' wherever the normalised input is above its mean (0.449)."""

    def __init__(self):
        self.shapes = []

    def predict_on_batch(self, x):
        self.shapes.append(x.shape)
        brain = (x > 0.449).astype(np.float32)
        return np.concatenate([1 - brain, brain], axis=-1)


def test_stripper_pipeline_box_largest_component_and_holes():
    grid = np.indices((60, 70, 50)).astype(np.float32)
    brain = ((grid[0] - 30) / 18) ** 2 + ((grid[1] - 38) / 22) ** 2 + ((grid[2] - 24) / 15) ** 2 < 1
    volume = np.where(brain, 1.0, 0.1).astype(np.float32)
    volume[28:31, 36:39, 23:26] = 0.1  # a dark hole inside: filled
    volume[2:5, 2:5, 2:5] = 1.0  # a bright speck far away: not the largest component
    network = ThresholdNetwork()
    stripper = skullstrip.DeepbetStripper(network, network)
    mask = stripper.mask(volume)
    assert network.shapes == [(1, 128, 128, 128, 1), (1, 256, 256, 256, 1)]
    assert not mask[2:5, 2:5, 2:5].any() and mask[28:31, 36:39, 23:26].all()
    dice = 2 * (mask & brain).sum() / (mask.sum() + brain.sum())
    assert dice > 0.98
    with pytest.raises(skullstrip.NoBrainError, match="constant"):
        stripper.mask(np.full((40, 40, 40), 3.0, np.float32))


def test_bounding_box_margin_and_empty():
    small = np.zeros((10, 10, 10), np.float32)
    small[2:6, 3:7, 4:8] = 1
    box = skullstrip.bounding_box(small, (20, 40, 10))
    # rows 2..5 scaled x2 -> centre 8, size 8 * 1.2 = 9.6 -> 10: 3..13
    assert box == (slice(3, 13), slice(10, 29), slice(3, 8))  # axis 1: centre 20, size 19.2 -> 19: 10..29
    with pytest.raises(skullstrip.NoBrainError):
        skullstrip.bounding_box(np.zeros((4, 4, 4)), (8, 8, 8))


def test_check_head_rejects_bad_inputs(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    good = np.random.default_rng(0).random((40, 40, 40)).astype(np.float32)
    assert scans.check_head("x.nii", good, affine).shape == (40, 40, 40)
    for data, aff, message in ((good[..., :1], affine, "not a 3-D head"), (good[0], affine, "3-D"),
                               (np.zeros((40, 40, 40)), affine, "empty volume"), (good, None, "no affine"),
                               (good, np.zeros((4, 4)), "singular")):
        with pytest.raises(DataError, match=message):
            scans.check_head("x.nii", data, aff)
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(good[..., :1], affine), str(path))
    with pytest.raises(DataError, match="flat.nii.gz: shape"):
        scans.check_header(scans.Subject("flat", str(path)))


def test_talairach_reader(tmp_path):
    path = tmp_path / "talairach.xfm"
    path.write_text("MNI Transform File\n% tkregister\n\nTransform_Type = Linear;\nLinear_Transform =\n"
                    " 1.1 0.0 0.0 1.5\n 0.0 0.9 0.1 -2.0\n 0.0 -0.1 1.0 3.0;\n")
    np.testing.assert_allclose(scans.read_talairach(path), [[1.1, 0, 0, 1.5], [0, 0.9, 0.1, -2], [0, -0.1, 1, 3],
                                                            [0, 0, 0, 1]])
    path.write_text("not a transform")
    with pytest.raises(DataError, match="Linear_Transform"):
        scans.read_talairach(path)


def test_rotation_scales_and_flags():
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([1.1, 1.0, 0.9])
    angle, scales = qc.rotation_and_scales(matrix)
    assert angle == pytest.approx(30.0) and np.allclose(sorted(scales), [0.9, 1.0, 1.1])
    rows = [{"output": f"s{i}", "similarity": 0.95 + 0.002 * i, "brain_ml": 1400.0} for i in range(6)]
    rows += [{"output": "low", "similarity": 0.8, "brain_ml": 1400.0},
             {"output": "tiny", "similarity": 0.95, "brain_ml": 100.0}]
    reasons = qc.flag_reasons(rows)
    assert sorted(reasons) == ["low", "tiny"] and "far below" in reasons["low"] and "100 ml" in reasons["tiny"]
    assert sorted(qc.flag_reasons(rows[:2] + rows[6:7])) == []  # too few subjects for the outlier rule


def test_output_grid_is_the_demo_grid_in_mni_millimetres():
    affine = template.output_affine((80, 96, 112), 2.0)
    assert np.allclose(affine[:3, :3], 2 * np.eye(3))
    centre = affine @ [39.5, 47.5, 55.5, 1.0]
    np.testing.assert_allclose(centre[:3], template.brain_centre())
    brain = template.resample_template((80, 96, 112), affine, "brain") > 0.5
    assert 1500 < brain.sum() * 8 / 1000 < 2100  # ml of the template's brain
    assert not brain[0].any() and not brain[-1].any() and not brain[:, 0].any() and not brain[..., -1].any()


@pytest.mark.slow
def test_registration_recovers_a_known_affine():
    from tf3dstylegan.preprocess.register import register_to_template
    head = synthetic.make_head(np.random.default_rng(4), "oblique", (3.0, 3.0, 3.0), canvas_mm=2)
    data = head.image.get_fdata(dtype=np.float32) * head.brain
    assert synthetic.registration_error(np.eye(4), head) > 3.0
    world_to_mni, _ = register_to_template(data, head.image.affine)
    assert synthetic.registration_error(world_to_mni, head) < 1.5


@pytest.mark.slow
def test_n4_lowers_white_matter_variation():
    from tf3dstylegan.preprocess.bias import n4_correct
    head = synthetic.make_head(np.random.default_rng(5), "LPS", (2.5, 2.5, 2.5), bias_std=0.4, canvas_mm=2)
    data = head.image.get_fdata(dtype=np.float32)
    corrected, field = n4_correct(data, head.image.affine)
    cv = [v[head.white_matter].std() / v[head.white_matter].mean() for v in (data, corrected)]
    assert cv[1] < 0.7 * cv[0] and np.isfinite(field).all() and field.shape == data.shape
