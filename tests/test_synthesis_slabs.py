"""The last synthesis level computed in slabs (slab_size): window geometry, same volumes, gradients, config."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.networks import build_generator
from tf3dstylegan.networks.synthesis import SLAB_HALO, slab_windows

TINY = dict(base_size=(3, 4, 5), resolution_log2=4, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8)


def needed_rows(start, stop, low, halo=SLAB_HALO):
    """Half-resolution rows that output rows [start, stop) of the last level depend on (see SLAB_HALO)."""
    return max(0, start // 2 - halo), min(low, -(-stop // 2) + halo)


@pytest.mark.parametrize("size", [6, 12, 80, 224])
@pytest.mark.parametrize("slab_size", [1, 2, 3, 7, 16, 40])
def test_windows_tile_the_output_and_cover_what_each_slab_reads(size, slab_size):
    windows = slab_windows(size, slab_size)
    low, stop = size // 2, 0
    widths = {lo_stop - lo_start for lo_start, lo_stop, _, _ in windows}
    assert len(widths) == 1                                    # one window shape: one set of kernels, reused memory
    for lo_start, lo_stop, crop, length in windows:
        start, stop = stop, stop + length
        need = needed_rows(start, stop, low)
        assert 0 <= lo_start <= need[0] and need[1] <= lo_stop <= low
        assert 2 * lo_start + crop == start and crop + length <= 2 * (lo_stop - lo_start)
    assert stop == size


def test_a_smaller_halo_would_miss_rows():
    assert any(needed_rows(start, start + length, 40)[0] < lo_start
               for lo_start, _, crop, length in slab_windows(80, 16, halo=SLAB_HALO - 1)
               for start in [2 * lo_start + crop])


def expressive_generator(**overrides):
    keras.utils.set_random_seed(3)
    G = build_generator("2mm-fd16", **{**TINY, **overrides})
    for layer in G.synthesis.style_layers:
        if layer.noise.use_noise:
            layer.noise.strength.assign(0.3)
        layer.bias.assign(tf.random.normal(layer.bias.shape))
    return G


@pytest.mark.slow
@pytest.mark.parametrize("g_architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=pytest.mark.slow)])  # fused: XLA compiles
def test_slabs_give_the_same_volumes(g_architecture, fused):
    G = expressive_generator(g_architecture=g_architecture)
    if fused:
        G_fused = build_generator("2mm-fd16", fused_modconv=True, **TINY, g_architecture=g_architecture)
        G_fused.set_weights(G.get_weights())
        G = G_fused
    ws = G.mapping(tf.random.normal([2, 8]))
    noise = [tf.random.normal([2, *shape[1:]]) for shape in G.synthesis.noise_shapes]
    for mode, given in (("const", None), ("none", None), ("random", noise)):
        whole = G.synthesis(ws, noise_mode=mode, noise=given).numpy()
        for slab_size in (1, 3, 5, 11):
            sliced = G.synthesis(ws, noise_mode=mode, noise=given, slab_size=slab_size).numpy()
            np.testing.assert_allclose(sliced, whole, atol=1e-5 * np.abs(whole).max(), err_msg=f"{mode} {slab_size}")


@pytest.mark.slow
def test_slabs_inside_tf_function_with_random_noise_and_without_noise():
    G = expressive_generator(no_noise=True)
    z = tf.random.normal([3, 8])
    run = tf.function(lambda z: G(z, slab_size=4))
    np.testing.assert_allclose(run(z).numpy(), G(z).numpy(), atol=1e-5)
    G = expressive_generator()
    a, b = (G(z, noise_mode="random", slab_size=5).numpy() for _ in range(2))
    assert np.abs(a - b).max() > 1e-3 and np.all(np.isfinite(a))


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", [False, True])
def test_slabs_give_the_same_gradients(checkpoint):
    G = expressive_generator(g_architecture="resnet")
    ws = tf.Variable(G.mapping(tf.random.normal([2, 8])))

    def grads(slab_size):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(G.synthesis(ws, slab_size=slab_size, checkpoint=checkpoint)))
        return tape.gradient(loss, [ws] + G.synthesis.trainable_weights)

    for sliced, whole in zip(grads(3), grads(0)):  # float32 sums over slabs in another order
        np.testing.assert_allclose(sliced.numpy(), whole.numpy(), atol=1e-5 * np.abs(whole.numpy()).max())


@pytest.mark.slow
def test_slab_size_is_configured_saved_and_checked(tmp_path):
    G = build_generator("2mm-fd16", slab_size=4, **TINY)
    assert G.synthesis.slab_size == 4 and G.get_config()["slab_size"] == 4
    G.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    assert loaded.synthesis.slab_size == 4
    z = tf.random.normal([2, 8])
    np.testing.assert_allclose(loaded(z).numpy(), G(z, slab_size=0).numpy(), atol=1e-5)
    for bad in (-1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="slab_size must be a non-negative integer"):
            build_generator("2mm-fd16", slab_size=bad, **TINY)
        with pytest.raises(ValueError, match="slab_size must be a non-negative integer"):
            G(z, slab_size=bad)
