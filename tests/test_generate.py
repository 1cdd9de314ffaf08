"""Generation, style mixing, interpolation and their writers on a tiny 12x16x20 generator."""
import gc
import subprocess
import sys
import weakref
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import tensorflow as tf
import pytest

from tf3dstylegan import generate as gen
from tf3dstylegan import sampling
from tf3dstylegan.data.nifti import grid_affine
from tf3dstylegan.networks import build_generator

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-5  # same inputs through different batch compositions


@pytest.fixture(scope="module")
def G():
    """A random tiny generator made expressive: output std ~0.3, noise and truncation with visible effect."""
    keras.utils.set_random_seed(7)
    G = build_generator("2mm-fd16", base_size=(3, 4, 5), resolution_log2=4, fmap_min=4, fmap_max=4,
                        latent_size=8, dlatent_size=8, mapping_fmaps=8)
    for layer in G.synthesis.noise_layers:
        layer.strength.assign(0.05)
    to_image = G.synthesis.to_images[str(G.config.resolution_log2)].conv
    to_image.weight.assign(to_image.weight * (0.3 / gen.generate_volumes(G, range(4)).std()))
    G.w_avg.assign(np.mean(G.mapping(np.random.RandomState(1).randn(64, G.latent_size))[:, 0], axis=0))
    return G


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_compiled_synthesis_is_built_once_per_generator_and_arguments():
    G = build_generator("2mm-fd16", base_size=(3, 4, 5), resolution_log2=3, fmap_min=4, fmap_max=4,
                        latent_size=8, dlatent_size=8, mapping_fmaps=8)
    run = sampling.compiled_synthesis(G, "const", None)
    assert run(np.zeros((1, G.num_ws, 8), np.float32)).shape == (1, 6, 8, 10, 1)
    assert sampling.compiled_synthesis(G, "const", None) is run
    assert sampling.compiled_synthesis(G, "none", None) is not run
    assert sampling.compiled_synthesis(G, "const", 2) is not run
    generator = weakref.ref(G)
    del G, run
    gc.collect()
    assert generator() is None  # the cache does not keep a Generator alive


def test_parse_int_list():
    assert gen.parse_int_list("0-3,7") == [0, 1, 2, 3, 7]
    assert gen.parse_int_list("5") == [5]
    for bad in ("a", "3-1", "1,,2", "-1"):
        with pytest.raises(ValueError):
            gen.parse_int_list(bad)


def read_png(path):
    """Decoded by TensorFlow's PNG decoder (independent of our encoder): [H, W] uint8."""
    return tf.io.decode_png(path.read_bytes(), channels=1).numpy()[..., 0]


def test_flag_names_take_dashes_or_underscores():
    from tf3dstylegan.cli import normalize_flag_names
    argv = ["prog", "--noise-mode", "const", "--col-styles=5-9", "--w-plus", "-1"]
    assert normalize_flag_names(argv) == ["prog", "--noise_mode", "const", "--col_styles=5-9", "--w_plus", "-1"]


def test_seed_ranges_are_not_expanded():
    seeds = gen.parse_int_list("0-1999999999,5")
    assert len(seeds) == 2_000_000_001 and seeds[1_999_999_999] == 1_999_999_999 and seeds[-1:] == [5]
    assert list(gen.parse_int_list("2-4,9")) == [2, 3, 4, 9]
    with pytest.raises(ValueError, match="too large"):
        gen.parse_int_list("4294967296")


@pytest.mark.slow
@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_same_seed_same_volume_and_seeds_differ(G, noise_mode):
    a = gen.generate_volumes(G, [3, 4], psi=0.7, noise_mode=noise_mode)
    b = gen.generate_volumes(G, [3, 4], psi=0.7, noise_mode=noise_mode)
    assert a.shape == (2, 12, 16, 20, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    sliced = gen.generate_volumes(G, [3, 4], psi=0.7, noise_mode=noise_mode, batch_size=1, slab_size=3)
    np.testing.assert_allclose(sliced, a, atol=TOL)
    assert max_diff(a[0], a[1]) > 0.05


@pytest.mark.slow
def test_noise_modes_differ_and_random_noise_follows_seed(G):
    const, random, none = (gen.generate_volumes(G, [3], noise_mode=m) for m in ("const", "random", "none"))
    assert min(max_diff(const, random), max_diff(const, none), max_diff(random, none)) > 0.01
    # A seed's random noise does not depend on the other seeds in the batch.
    np.testing.assert_allclose(gen.generate_volumes(G, [9, 3], noise_mode="random")[1], random[0], atol=TOL)


def test_truncation(G):
    average = G.synthesis(np.tile(G.w_avg.numpy(), [1, G.num_ws, 1])).numpy()
    collapsed = gen.generate_volumes(G, [1, 2], psi=0.0)
    np.testing.assert_allclose(collapsed, np.concatenate([average, average]), atol=TOL)
    # A cutoff truncates only the coarse layers: seeds still differ.
    cut = gen.generate_volumes(G, [1, 2], psi=0.0, cutoff=2)
    assert max_diff(cut[0], cut[1]) > 0.01


@pytest.mark.slow
def test_style_mix_extremes_equal_row_and_column(G):
    rows, cols = [1, 2], [3, 4, 5]
    row_v, col_v, mixed = gen.style_mix(G, rows, cols, range(G.num_ws), psi=0.8)
    assert mixed.shape == (2, 3, 12, 16, 20, 1)
    np.testing.assert_allclose(row_v, gen.generate_volumes(G, rows, psi=0.8), atol=TOL)
    for r in range(len(rows)):
        np.testing.assert_allclose(mixed[r], col_v, atol=TOL)     # all layers from the column
    _, _, unmixed = gen.style_mix(G, rows, cols, [], psi=0.8)
    for c in range(len(cols)):
        np.testing.assert_allclose(unmixed[:, c], row_v, atol=TOL)  # no layer from the column
    _, _, partial = gen.style_mix(G, rows, cols, [2, 3], psi=0.8)
    assert max_diff(partial[0, 0], row_v[0]) > 1e-3 and max_diff(partial[0, 0], col_v[0]) > 1e-3


def test_style_mix_rejects_bad_layers(G):
    with pytest.raises(ValueError, match="out of range"):
        gen.style_mix(G, [1], [2], [G.num_ws])


@pytest.mark.parametrize("space", ["w", "z"])
@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_interpolation_endpoints_equal_seeds(G, space, noise_mode):
    frames = gen.interpolate(G, 3, 8, 5, space=space, psi=0.9, noise_mode=noise_mode)
    ends = gen.generate_volumes(G, [3, 8], psi=0.9, noise_mode=noise_mode)
    assert frames.shape == (5, 12, 16, 20, 1)
    np.testing.assert_allclose(frames[0], ends[0], atol=TOL)
    np.testing.assert_allclose(frames[-1], ends[1], atol=TOL)
    assert min(max_diff(frames[2], e) for e in ends) > 1e-3


def test_w_interpolation_is_linear_in_w(G):
    w_a, w_b = gen.seed_styles(G, [3, 8])
    middle = G.synthesis(((w_a + w_b) / 2)[np.newaxis]).numpy()[0]
    np.testing.assert_allclose(gen.interpolate(G, 3, 8, 3, space="w")[1], middle, atol=TOL)


def test_slerp_keeps_norm_and_endpoints():
    rng = np.random.RandomState(0)
    a, b = rng.randn(64), rng.randn(64)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    np.testing.assert_allclose(gen.slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(gen.slerp(a, b, 1.0), b, atol=1e-12)
    for t in (0.25, 0.5):
        assert abs(np.linalg.norm(gen.slerp(a, b, t)) - np.linalg.norm(a)) < 1e-9
    assert np.linalg.norm((a + b) / 2) < np.linalg.norm(a) - 0.5  # what linear interpolation would do


@pytest.mark.slow
def test_writers(G, tmp_path):
    seeds = [0, 1, 2]
    volumes = gen.generate_volumes(G, seeds)
    gen.write_generated(tmp_path, seeds, volumes, G.config.voxel_size)
    image = nib.load(str(tmp_path / "seed0001.nii.gz"))
    data = np.asarray(image.dataobj)
    assert data.dtype == np.float32 and data.shape == (12, 16, 20)
    assert data.min() >= 0.0 and data.max() <= 1.0
    np.testing.assert_allclose(data, np.clip((volumes[1, ..., 0] + 1) / 2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(image.affine, grid_affine((12, 16, 20), G.config.voxel_size))
    assert not np.allclose(image.affine, np.eye(4))
    assert read_png(tmp_path / "seed0000.png").shape[0] == 20 * 6        # max(Y, Z) rows, enlarged to >= 96 px
    assert read_png(tmp_path / "montage.png").shape[0] > 20 * 6            # 2 rows of tiles
    streamed = tmp_path / "streamed"                                       # batch by batch, as the command does
    assert gen.write_generated_batches(streamed, gen.generated_batches(G, seeds, batch_size=2),
                                       G.config.voxel_size, columns=2) == 3
    # Batches of 2 and 3 may take other CPU kernels (other float32 rounding): equal within the float32 tolerance
    # (one grey level where a voxel sits on a rounding boundary of the 8-bit montage).
    montages = [read_png(folder / "montage.png").astype(int) for folder in (streamed, tmp_path)]
    assert montages[0].shape == montages[1].shape and np.abs(montages[0] - montages[1]).max() <= 1
    np.testing.assert_allclose(nib.load(str(streamed / "seed0002.nii.gz")).get_fdata(),
                               nib.load(str(tmp_path / "seed0002.nii.gz")).get_fdata(), atol=TOL)
    assert not list(tmp_path.glob("*tmp*"))

    rows, cols, mixed = gen.style_mix(G, [1, 2], [3], [3])
    gen.write_style_mix(tmp_path, [1, 2], [3], rows, cols, mixed, G.config.voxel_size)
    assert (tmp_path / "mix-0002-0003.nii.gz").is_file()
    axial = read_png(tmp_path / "style_mix_axial.png")                    # 3x2 cells of [Y, X] = [16, 12] * 6
    assert axial.shape == (3 * 96 + 2 * 2, 2 * 72 + 2)
    assert axial[:96, :72].max() == 0 and axial[:96, 74:].max() > 0       # blank corner, column image

    frames = gen.interpolate(G, 0, 1, 4)
    gen.write_interpolation(tmp_path, 0, 1, frames, G.config.voxel_size)
    assert len(list(tmp_path.glob("interp-w-0000-0001-*.nii.gz"))) == 4
    assert (tmp_path / "interp-w-0000-0001.png").is_file()


@pytest.mark.slow
def test_cli(G, tmp_path):
    G.save(tmp_path / "G.keras")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "generate.py"), "--network", str(tmp_path / "G.keras"), "--seeds", "0-1",
           "--trunc", "0.7", "--noise-mode", "random", "--slab-size", "5", "--outdir", str(out), "--row-seeds", "1,2",
           "--col-seeds", "3", "--col-styles", "2-3", "--interp", "0,1", "--frames", "3", "--space", "z"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    expected = gen.generate_volumes(G, [1], psi=0.7, noise_mode="random")[0, ..., 0]
    np.testing.assert_allclose(nib.load(str(out / "seed0001.nii.gz")).get_fdata(),
                               np.clip((expected + 1) / 2, 0, 1), atol=1e-5)
    for name in ("montage.png", "mix-0001-0003.nii.gz", "style_mix_sagittal.png", "interp-z-0000-0001-002.nii.gz"):
        assert (out / name).is_file(), name
    bad = subprocess.run([sys.executable, str(ROOT / "generate.py"), "--network", str(tmp_path / "nope.keras"),
                          "--seeds", "0", "--outdir", str(tmp_path / "bad")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "nope.keras" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad").exists()
    assert len(bad.stderr.strip().splitlines()) == 1  # one line, no TensorFlow notices
    again = subprocess.run(cmd[:8] + ["--outdir", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 2 and "--outdir" in again.stderr and "--overwrite" in again.stderr
