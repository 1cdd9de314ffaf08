"""Networks: Table 1 parameter counts, geometry, determinism, Keras-native use, bad arguments."""
import numpy as np
import pytest
import tensorflow as tf
import keras

import tf3dstylegan
from tf3dstylegan import layers as L
from tf3dstylegan.networks import build_generator

TINY = dict(base_size=(3, 4, 5), resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8)


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.mark.parametrize("preset, g_count, d_count", [
    ("2mm-fd96", 2428234, 4215553), ("2mm-fd64", 1084298, 1874433), ("2mm-fd32", 429258, 469249),
    ("2mm-fd16", 109418, 117633), ("1mm-fd16", 125356, 131745)])
def test_table1_parameter_counts(preset, g_count, d_count):
    G, D = tf3dstylegan.build_networks(preset)
    assert (trainable_count(G), trainable_count(D)) == (g_count, d_count)


@pytest.mark.parametrize("base, res", [((4, 4, 4), 3), ((3, 4, 5), 3), ((5, 6, 7), 2), ((2, 3, 1), 4)])
@pytest.mark.parametrize("g_arch, d_arch", [("orig", "resnet"), ("skip", "skip"), ("resnet", "orig")])
def test_geometry_and_architectures(base, res, g_arch, d_arch):
    cfg = tf3dstylegan.load_config("2mm-fd16", **{**TINY, "base_size": base, "resolution_log2": res,
                                                  "g_architecture": g_arch, "d_architecture": d_arch})
    G, D = tf3dstylegan.build_networks(cfg)
    expected = tuple(b * 2 ** (res - 2) for b in base)
    assert G.img_shape == expected and G.num_ws == 2 * res - 2
    z = tf.random.normal([2, 8])
    img = G(z)
    assert img.shape == (2,) + expected + (1,) and img.dtype == tf.float32
    assert G.mapping(z).shape == (2, G.num_ws, 8)
    assert D(img).shape == (2, 1)


def test_const_noise_is_deterministic_and_random_differs():
    G = build_generator("2mm-fd16", **TINY)
    z = tf.random.normal([2, 8])
    a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    for v in G.synthesis.noise_layers:
        v.strength.assign(0.5)
    r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
    assert np.abs(r1.numpy() - r2.numpy()).max() > 1e-4
    none = G(z, noise_mode="none").numpy()
    zero_noise = G.synthesis(G.mapping(z), noise=[tf.zeros(s) for s in G.synthesis.noise_shapes]).numpy()
    np.testing.assert_allclose(none, zero_noise, atol=1e-6)


def test_truncation_psi_zero_gives_average_and_cutoff():
    G = build_generator("2mm-fd16", **TINY)
    G.w_avg.assign(tf.random.normal([8]))
    z = tf.random.normal([3, 8])
    ws = G.truncate(G.mapping(z), 0.0)
    np.testing.assert_allclose(ws.numpy(), np.broadcast_to(G.w_avg.numpy(), ws.shape), atol=1e-6)
    ws_cut = G.truncate(G.mapping(z), 0.0, cutoff=2).numpy()
    np.testing.assert_allclose(ws_cut[:, 2:], G.mapping(z).numpy()[:, 2:], atol=1e-6)


def test_training_styles_update_w_avg_and_mix():
    G = build_generator("2mm-fd16", **TINY, style_mixing_prob=1.0, dlatent_avg_beta=0.5)
    z = tf.random.normal([4, 8])
    ws_plain = G.mapping(z).numpy()
    ws = G.training_styles(z).numpy()
    np.testing.assert_allclose(G.w_avg.numpy(), 0.5 * ws_plain[:, 0].mean(0), rtol=1e-5)
    np.testing.assert_allclose(ws[:, 0], ws_plain[:, 0], rtol=1e-5)   # cutoff >= 1
    assert np.abs(ws[:, -1] - ws_plain[:, -1]).max() > 1e-3           # cutoff < num_ws
    img = G.synthesis(G.training_styles(z), noise_mode="random")
    assert img.shape == (4,) + G.img_shape + (1,)


@pytest.mark.slow
def test_keras_save_load_predict_and_export(tmp_path):
    G = build_generator("2mm-fd16", **TINY)
    z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    expected = G(z).numpy()
    predicted = G.predict(tf.data.Dataset.from_tensor_slices(z).batch(2), verbose=0)
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
    G.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    assert type(loaded) is type(G) and loaded.config == G.config
    np.testing.assert_array_equal(loaded(z).numpy(), expected)
    G.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(tf.constant(z)).numpy(), expected, atol=1e-5)


def test_fused_modconv_generator_matches_plain():
    G = build_generator("2mm-fd16", **TINY)
    G_fused = build_generator("2mm-fd16", fused_modconv=True, **TINY)
    G_fused.set_weights(G.get_weights())
    z = tf.random.normal([2, 8])
    np.testing.assert_allclose(G_fused(z).numpy(), G(z).numpy(), atol=1e-5)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        tf3dstylegan.build_networks("nope")
    with pytest.raises(ValueError, match=r"does not fit base_size"):
        tf3dstylegan.load_config("2mm-fd16", img_shape=(80, 96, 100))
    G, D = tf3dstylegan.build_networks("2mm-fd16", **TINY)
    with pytest.raises(ValueError, match=r"z must have shape \[batch, 8\]"):
        G(tf.zeros([2, 7]))
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G(tf.zeros([2, 8]), noise_mode="fresh")
    with pytest.raises(ValueError, match="volumes must have shape"):
        D(tf.zeros([2, 6, 8, 10, 2]))
    with pytest.raises(ValueError, match="unknown config fields"):
        tf3dstylegan.load_config("2mm-fd16", fmaps=3)


@pytest.mark.parametrize("cls, kwargs", [
    (L.EqualizedDense, dict(units=5, lrmul=0.1, activation="lrelu")),
    (L.EqualizedConv3D, dict(filters=3, kernel_size=3, down=True, use_bias=False)),
    (L.ModConv3D, dict(filters=4, kernel_size=3, demodulate=False, up=True)),
    (L.NoiseInjection, dict(use_noise=False)),
    (L.SynthesisLayer, dict(filters=4, kernel_size=3, up=True, use_noise=False, fused=True)),
    (L.ToImage, dict(channels=2, fused=True)), (L.ConstantInput, dict(channels=3, base_size=(2, 3, 4))),
    (L.MinibatchStddev3D, dict(group_size=2, num_features=3)), (L.Upsample3D, {}), (L.Downsample3D, {})])
def test_layers_round_trip_through_config(cls, kwargs):
    """Every non-default constructor argument survives serialisation (a field dropped from get_config or ignored
    by from_config gives the clone the default instead)."""
    layer = cls(**kwargs)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is cls
    config = clone.get_config()
    for key, value in kwargs.items():
        stored = config[key]
        assert (list(stored) if isinstance(stored, (tuple, list)) else stored) == \
            (list(value) if isinstance(value, tuple) else value), key


def test_noise_layers_of_earlier_files_still_load():
    """Files written before the switch was named use_noise stored it as `enabled`."""
    layer = L.NoiseInjection.from_config({"name": "noise", "trainable": True, "dtype": "float32", "enabled": False})
    assert layer.use_noise is False and layer.get_config()["use_noise"] is False


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_first_order_gradients():
    tiny = dict(TINY, resolution_log2=4, g_architecture="resnet")
    G, D = tf3dstylegan.build_networks("2mm-fd16", **tiny)
    Gc, Dc = tf3dstylegan.build_networks("2mm-fd16", gradient_checkpointing=True, **tiny)
    Gc.set_weights(G.get_weights())
    Dc.set_weights(D.get_weights())
    for layer in G.synthesis.noise_layers + Gc.synthesis.noise_layers:
        layer.strength.assign(0.3)
    z = tf.random.normal([2, 8])

    def grads(G, D):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.softplus(-D(G(z))))
        return tape.gradient(loss, G.trainable_weights + D.trainable_weights)

    for plain, checkpointed in zip(grads(G, D), grads(Gc, Dc)):
        np.testing.assert_allclose(checkpointed.numpy(), plain.numpy(), rtol=1e-5, atol=1e-7)
    assert Gc.get_config()["gradient_checkpointing"] and Dc.get_config()["gradient_checkpointing"]
    with tf.GradientTape() as tape:   # random noise is drawn outside the recomputed blocks
        loss = tf.reduce_mean(Dc(Gc.synthesis(Gc.training_styles(z), noise_mode="random")))
    assert all(g is not None for g in tape.gradient(loss, Gc.synthesis.trainable_weights))


@pytest.mark.parametrize("res", [3, 4, 6, 8])
def test_style_index_layout_is_one_consistent_map(res):
    from tf3dstylegan.config import ModelConfig
    from tf3dstylegan.networks.synthesis import (level_name, level_style_indices, style_layer_level,
                                                 to_image_style_index)
    num_ws = ModelConfig(resolution_log2=res).num_ws
    convs = [0] + [i for r in range(3, res + 1) for i in level_style_indices(r)]
    assert convs == list(range(num_ws - 1))                  # every conv once, in order
    assert to_image_style_index(res) == num_ws - 1           # the output layer uses the last style
    assert [style_layer_level(j) for j in convs] == [2] + [r for r in range(3, res + 1) for _ in range(2)]
    if res == 4:
        G = build_generator({"resolution_log2": res, "base_size": [1, 1, 1], "fmap_min": 8, "fmap_max": 8,
                             "latent_size": 8, "dlatent_size": 8, "mapping_layers": 1})
        for j, layer in enumerate(G.synthesis.style_layers):
            assert layer.name.startswith(level_name((1, 1, 1), style_layer_level(j)) + "_conv")
