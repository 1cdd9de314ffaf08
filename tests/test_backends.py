"""The same networks on every Keras backend: JAX (and PyTorch where installed) without TensorFlow give the volumes
and scores of the TensorFlow backend and of the original TF1 code; the JAX training step equals the TensorFlow step
from the same weights and inputs; JAX trains, resumes and generates without TensorFlow, on one or two devices."""
import json

import numpy as np
import pytest

from backends import as_json, available, requires, run_on
from tf3dstylegan import load_config

TINY = dict(base_size=(2, 2, 3), resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2, batch_size=4)
# Float32 forward passes of the same weights on two backends differ by rounding only: well below 1e-5 of the
# volumes' range (the networks' outputs are O(1)).
PARITY = 1e-5

KERAS_FILE = """
import sys, numpy as np, keras
from tf3dstylegan import load_network
from tf3dstylegan.generate import seed_styles
from tf3dstylegan.sampling import compiled_synthesis
out, results = sys.argv[1], {}
for variant in sys.argv[2:]:
    G = load_network(f"{out}/{variant}.keras").G_ema
    inputs = np.load(f"{out}/{variant}-inputs.npz")
    labels = inputs["labels"] if G.config.label_size else None
    results[variant + "/volumes"] = keras.ops.convert_to_numpy(G(inputs["z"], labels=labels, noise_mode="const"))
    ws = seed_styles(G, [0, 1], psi=0.7, labels=None if labels is None else labels[0])
    results[variant + "/compiled"] = compiled_synthesis(G, noise_mode="const", slab_size=4)(ws)
np.savez(out + "/out.npz", backend=keras.backend.backend(), **results)
"""
VARIANTS = {"plain": dict(),
            "conditional-resnet-fused": dict(g_architecture="resnet", label_size=3, fused_modconv=True)}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_keras_file_gives_the_same_volumes_on_every_backend(tmp_path, backend):
    """A generator saved on TensorFlow, loaded on JAX (without TensorFlow) or PyTorch: the same volumes, eager and
    compiled (with slabs), for a plain and a conditional resnet generator with fused modulated convolutions."""
    if not available(backend):
        pytest.skip(f"{backend} is not installed")
    import tf3dstylegan
    from tf3dstylegan.generate import seed_styles
    from tf3dstylegan.sampling import compiled_synthesis
    from tf3dstylegan.networks import build_generator
    expected = {}
    for name, variant in VARIANTS.items():
        variant = dict(variant)
        fused = variant.pop("fused_modconv", False)
        G = build_generator(load_config("2mm-fd16", **TINY, **variant), fused_modconv=fused)
        G.save(tmp_path / f"{name}.keras")
        z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
        labels = np.eye(3, dtype=np.float32) if G.config.label_size else np.zeros((3, 0), np.float32)
        np.savez(tmp_path / f"{name}-inputs.npz", z=z, labels=labels)
        loaded = tf3dstylegan.load_network(tmp_path / f"{name}.keras").G_ema
        expected[name + "/volumes"] = np.asarray(loaded(z, labels=labels if G.config.label_size else None,
                                                        noise_mode="const"))
        ws = seed_styles(G, [0, 1], psi=0.7, labels=labels[0] if G.config.label_size else None)
        expected[name + "/compiled"] = compiled_synthesis(G, noise_mode="const", slab_size=4)(ws)
    out, _ = run_on(backend, KERAS_FILE, tmp_path, *VARIANTS, without_tensorflow=backend == "jax")
    assert str(out["backend"]) == backend
    for key, value in expected.items():
        np.testing.assert_allclose(out[key], value, atol=PARITY * np.ptp(value), err_msg=key)


ORIGINAL = """
import sys, numpy as np, keras
from tf3dstylegan import load_network
from tf3dstylegan.generate import compiled_synthesis
data = np.load("tests/data/tf1-2mm-fd16/reference.npz")
nets = load_network("tests/data/tf1-2mm-fd16/network.pkl")
ws = keras.ops.convert_to_numpy(nets.G_ema.mapping(data["z"]))
images = compiled_synthesis(nets.G_ema)(ws)
scores = keras.ops.convert_to_numpy(nets.D(images))
np.savez(sys.argv[1] + "/out.npz", dlatents=ws, images=images, scores=scores)
"""


@pytest.mark.slow
@requires("jax")
def test_the_original_pickle_on_jax_without_tensorflow_matches_the_original(tmp_path, fixture_dir):
    from conftest import reference_crop
    out, _ = run_on("jax", ORIGINAL, tmp_path)
    data = np.load(fixture_dir / "reference.npz")
    np.testing.assert_allclose(out["dlatents"], data["dlatents"], atol=1e-4, rtol=0)  # the tolerance of the TF test
    np.testing.assert_allclose(reference_crop(out["images"], "images"), data["images"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["scores"], data["scores"], atol=1e-4, rtol=0)


STEP = """
import json, sys, numpy as np, keras
from tf3dstylegan import load_config
from tf3dstylegan.backend.jax.step import JaxTrainStep
from tf3dstylegan.networks import build_discriminator, build_generator
from tf3dstylegan.training.optimizers import make_optimizer
out = sys.argv[1]
inputs = np.load(out + "/inputs.npz")
cfg = load_config("2mm-fd16", **json.loads(sys.argv[2]))
G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
for name, model in (("G", G), ("D", D), ("G_ema", G_ema)):
    for var in model.variables:
        var.assign(inputs[f"{name}/{var.path}"])
g_opt, d_opt = (make_optimizer(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, interval, "float32")
                for lr, interval in ((cfg.g_lr, cfg.g_reg_interval), (cfg.d_lr, cfg.d_reg_interval)))
g_opt.build(G.trainable_variables)
d_opt.build(D.trainable_variables)
step = JaxTrainStep(cfg, G, D, G_ema, g_opt, d_opt, cfg.batch_size)
queues = {cfg.batch_size: [inputs["z_g"], inputs["z_d"]], step.pl_batch: [inputs["z_pl"]]}
step._latents = lambda rand, n: (queues[n].pop(0), None)
step._pl_probe = lambda rand: inputs["probe"]
import jax
state, stats = step(step.state(0.0), inputs["reals"], 0, jax.random.key(0))
step.assign(state)
arrays = {f"{name}/{v.path}": np.asarray(v.value) for name, m in (("G", G), ("D", D), ("G_ema", G_ema))
          for v in m.variables}
np.savez(out + "/out.npz", **arrays, **{"stat:" + k: np.asarray(v) for k, v in stats.items()})
"""


@pytest.mark.slow
@requires("jax")
def test_the_jax_step_equals_the_tensorflow_step(tmp_path):
    """One step with both lazy regularisers (step 0), Adam, EMA, from the same weights, latents, probe and reals:
    the same losses and updated weights (no noise maps or style mixing: their draws are the backends' own)."""
    import keras
    import tensorflow as tf
    from tf3dstylegan.backend.tensorflow.step import TrainStep
    from tf3dstylegan.networks import build_discriminator, build_generator
    from tf3dstylegan.training.optimizers import make_optimizer
    fields = dict(TINY, style_mixing_prob=0.0, no_noise=True, g_reg_interval=4, d_loss="logistic_r1",
                  d_reg_interval=4, d_gamma=10.0, pl_batch_shrink=2, dlatent_avg_beta=0.9)
    cfg = load_config("2mm-fd16", **fields)
    keras.utils.set_random_seed(1)
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    for ema, var in zip(G_ema.variables, G.variables, strict=True):
        ema.assign(var)
    rng = np.random.default_rng(2)
    draws = dict(z_g=rng.standard_normal((4, 8)), z_d=rng.standard_normal((4, 8)), z_pl=rng.standard_normal((2, 8)),
                 probe=rng.standard_normal((2, *cfg.img_shape, 1)) / np.sqrt(np.prod(cfg.img_shape)),
                 reals=rng.uniform(-1, 1, (4, *cfg.img_shape, 1)))
    draws = {k: v.astype(np.float32) for k, v in draws.items()}
    weights = {f"{name}/{v.path}": v.numpy() for name, m in (("G", G), ("D", D), ("G_ema", G_ema)) for v in m.variables}
    np.savez(tmp_path / "inputs.npz", **draws, **weights)
    g_opt, d_opt = (make_optimizer(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, interval, "float32")
                    for lr, interval in ((cfg.g_lr, cfg.g_reg_interval), (cfg.d_lr, cfg.d_reg_interval)))
    g_opt.build(G.trainable_variables)
    d_opt.build(D.trainable_variables)
    train_step = TrainStep(cfg, tf.distribute.get_strategy(), G, D, G_ema, g_opt, d_opt,
                           tf.random.Generator.from_seed(0), tf.Variable(0.0), 4)
    queues = {4: [draws["z_g"], draws["z_d"], draws["z_d"]], 2: [draws["z_pl"]]}
    train_step._latents = lambda n: tf.constant(queues[n].pop(0))
    train_step._pl_probe = lambda: tf.constant(draws["probe"])
    stats = {k: float(v) for k, v in train_step(tf.constant(draws["reals"]), 0).items()}
    out, _ = run_on("jax", STEP, tmp_path, json.dumps(fields))
    assert set(stats) == {k[len("stat:"):] for k in out if k.startswith("stat:")}
    for key, value in stats.items():
        np.testing.assert_allclose(float(out["stat:" + key]), value, rtol=1e-4, atol=1e-6, err_msg=key)
    moved = 0
    for name, model in (("G", G), ("D", D), ("G_ema", G_ema)):
        for var in model.variables:
            key = f"{name}/{var.path}"
            np.testing.assert_allclose(out[key], var.numpy(), rtol=1e-4, atol=1e-5, err_msg=key)
            moved += not np.allclose(var.numpy(), weights[key])
    assert moved > 10  # the step did change the weights


TRAIN = """
import sys, subprocess, numpy as np
from tf3dstylegan.data import RecordWriter
out = sys.argv[1]
with RecordWriter(out + "/records", resolution_log2=3, name="tiny") as writer:
    for volume in np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 6)).astype(np.float32):
        writer.write(volume)
from tf3dstylegan.commands import train as train_command
from tf3dstylegan import cli
tiny = sys.argv[2].split()
for kimg in ("0.012", "0.02"):
    code = cli.run("tf3dstylegan.commands.train", ["train.py", *tiny, "--data", out + "/records", "--outdir",
                                                   out + "/runs", "--kimg", kimg])
    assert code == 0, code
code = cli.run("tf3dstylegan.commands.generate", ["generate.py", "--network", out + "/runs/00000-2mm-fd16",
                                                 "--seeds", "0-1", "--outdir", out + "/generated"])
assert code == 0
code = cli.run("tf3dstylegan.commands.project", ["project.py", "--network", out + "/runs/00000-2mm-fd16",
                                               "--target", out + "/generated/seed0000.nii.gz", "--steps", "3",
                                               "--outdir", out + "/projected"])
assert code == 0
print("RESULT{}")
"""
TINY_FLAGS = ("--cfg 2mm-fd16 --override base_size=[2,2,3] --override resolution_log2=3 --override fmap_min=4 "
              "--override fmap_max=4 --override latent_size=8 --override dlatent_size=8 --override mapping_fmaps=8 "
              "--override mapping_layers=2 --override tick_kimg=0.004 --batch 4")


@pytest.mark.slow
@requires("jax")
def test_train_resume_generate_and_project_on_jax_without_tensorflow(tmp_path):
    _, stdout = run_on("jax", TRAIN, tmp_path, TINY_FLAGS)
    run = tmp_path / "runs" / "00000-2mm-fd16"
    assert "resuming from step 3" in stdout and "JAX on one cpu device" in stdout, stdout[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-3.npz", "ckpt-4.npz", "ckpt-5.npz"]
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and all(np.isfinite(r["loss/G"]) for r in records)
    assert json.loads((run / "training_options.json").read_text())["backend"] == "jax"
    assert len(list((tmp_path / "generated").glob("seed*.nii.gz"))) == 2
    with np.load(tmp_path / "projected" / "projected_w.npz") as projected:
        assert np.isfinite(projected["w"]).all()
    # A JAX run folder reads on TensorFlow too (portable checkpoints).
    from tf3dstylegan import load_network
    nets = load_network(run)
    assert nets.source.endswith("ckpt-5.npz") and nets.D is not None


PARALLEL = """
import json, sys, numpy as np, jax
from tf3dstylegan import load_config
from tf3dstylegan.backend.jax.trainer import Trainer
from tf3dstylegan.training.options import TrainingOptions
cfg = load_config("2mm-fd16", **json.loads(sys.argv[2]))
reals = np.random.default_rng(0).uniform(-1, 1, (4, *cfg.img_shape, 1)).astype(np.float32)
losses = {}
for gpus in (1, 2):
    opts = TrainingOptions(batch=4, seed=3, gpus=gpus).resolved(cfg)
    trainer = Trainer(cfg, opts, None, sys.argv[1] + f"/ckpt{gpus}")
    losses[gpus] = [{k: float(v) for k, v in trainer.step(trainer._placed(reals), i).items()} for i in range(2)]
    losses[f"devices{gpus}"] = trainer.num_replicas
print("RESULT" + json.dumps(losses))
"""


@pytest.mark.slow
@requires("jax")
def test_data_parallel_on_two_host_devices_equals_one_device(tmp_path):
    fields = dict(TINY, mbstd_group_size=4)
    _, stdout = run_on("jax", PARALLEL, tmp_path, json.dumps(fields),
                       env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    result = as_json(stdout)
    assert result["devices1"] == 1 and result["devices2"] == 2
    for one, two in zip(result["1"], result["2"], strict=True):
        assert one.keys() == two.keys()
        for key in one:  # the same global-batch math, summed in another order
            np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)
