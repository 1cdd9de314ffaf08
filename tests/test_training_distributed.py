"""tf.distribute: 2 logical CPUs under MirroredStrategy equal 1 device; 2 worker processes train together."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = dict(base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=2, batch_size=8)

EQUALITY = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tf3dstylegan import load_config
from tf3dstylegan.networks import build_discriminator, build_generator
from tf3dstylegan.training.optimizers import make_optimizer
from tf3dstylegan.backend.tensorflow.step import TrainStep

# Deterministic step: no style mixing, no noise, no minibatch-stddev (its groups depend on the split).
fields = dict(json.loads(sys.argv[1]), style_mixing_prob=0.0, no_noise=True, mbstd_group_size=1)
cases = {"sgd_lazy_every_step": dict(g_reg_interval=1, d_loss="logistic_r1", d_reg_interval=1),
         "adam_combined_r2": dict(g_reg_interval=None, d_loss="logistic_r2", d_reg_interval=None)}
volumes = np.random.default_rng(0).uniform(-1, 1, (32, 4, 4, 6, 1)).astype(np.float32)
keras.utils.set_random_seed(0)
cfg0 = load_config("2mm-fd16", **fields)
initial = [m.get_weights() for m in (build_generator(cfg0), build_discriminator(cfg0))]

def run(strategy, cfg, sgd):
    with strategy.scope():
        G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
        for model, weights in zip((G, D, G_ema), (initial[0], initial[1], initial[0])):
            model.set_weights(weights)
        if sgd:
            g_opt, d_opt = keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05)
        else:
            g_opt = make_optimizer(0.002, 0.0, 0.99, 1e-8, cfg.g_reg_interval, "float32")
            d_opt = make_optimizer(0.002, 0.0, 0.99, 1e-8, cfg.d_reg_interval, "float32")
        g_opt.build(G.trainable_variables)
        d_opt.build(D.trainable_variables)
        pl_mean = tf.Variable(0.0, synchronization=tf.VariableSynchronization.ON_WRITE,
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    step = TrainStep(cfg, strategy, G, D, G_ema, g_opt, d_opt, tf.random.Generator.from_seed(5), pl_mean, 8)
    data = strategy.distribute_datasets_from_function(
        lambda ctx: tf.data.Dataset.from_tensor_slices(volumes).batch(ctx.get_per_replica_batch_size(8)))
    it = iter(data)
    losses = [{k: float(v) for k, v in step(next(it), i).items()} for i in range(2)]
    return losses, [v.numpy().tolist() for m in (G, D, G_ema) for v in m.variables] + [float(pl_mean.numpy())]

name = sys.argv[2]  # one case per process: a second MirroredStrategy in a process mixes up collectives
cfg = cfg0.replace(**cases[name])
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
out = {"one": run(tf.distribute.get_strategy(), cfg, name.startswith("sgd")),
       "two": run(mirrored, cfg, name.startswith("sgd")),
       "initial": [w.tolist() for ws in initial for w in ws]}
print("RESULT" + json.dumps(out))
"""


def _run_script(script, *args, env=None, timeout=600):
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sgd_lazy_every_step", "adam_combined_r2"])
def test_two_logical_cpus_give_the_same_update_as_one_device(case):
    """SGD makes a wrong loss scaling visible (Adam would hide a constant factor); Adam checks the real optimizer."""
    import numpy as np
    result = json.loads(_run_script(EQUALITY, json.dumps(TINY), case).stdout.split("RESULT", 1)[1])
    (losses_one, weights_one), (losses_two, weights_two) = result["one"], result["two"]
    assert losses_one[0].keys() == losses_two[0].keys()
    assert "loss/G_reg" in losses_one[0] and "loss/D_reg" in losses_one[0]
    for one, two in zip(losses_one, losses_two):
        for key in one:
            np.testing.assert_allclose(two[key], one[key], rtol=2e-4, atol=1e-6, err_msg=key)
    for a, b in zip(weights_one, weights_two):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=2e-6)
    initial = result["initial"]
    moved = sum(not np.allclose(np.array(w), np.array(i)) for w, i in zip(weights_one, initial))
    assert moved > len(initial) // 2, "the step changed almost nothing"


WORKER = """
import json, sys
import numpy as np
import tensorflow as tf
from tf3dstylegan import load_config
from tf3dstylegan.training import train
cfg = load_config("2mm-fd16", **json.loads(sys.argv[1]), tick_kimg=0.008, g_reg_interval=2, d_reg_interval=2,
                  d_loss="logistic_r1")
volumes = np.random.default_rng(0).uniform(-1, 1, (32, 4, 4, 6, 1)).astype(np.float32)

def data(ctx, start_step):
    ds = tf.data.Dataset.from_tensor_slices(volumes).shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    return ds.repeat().batch(ctx.get_per_replica_batch_size(8))

captured = []
run = train(cfg, data, sys.argv[2], kimg=0.024, seed=3, log=captured.append)
print("LOG" + json.dumps(captured))
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_worker_processes_train_together(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   CUDA_VISIBLE_DEVICES="")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(TINY), str(tmp_path / "runs")],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=400)
            assert proc.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    chief_log = json.loads(outputs[0].split("LOG", 1)[1])
    assert any("MultiWorkerMirroredStrategy, 2 replica(s)" in line for line in chief_log)
    assert any(line.startswith("done: 0.024 kimg") for line in chief_log)
    assert json.loads(outputs[1].split("LOG", 1)[1]) == []  # the other worker writes and prints nothing
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["00000-2mm-fd16"]
    assert (runs[0] / "checkpoints" / "ckpt-3.index").is_file()  # the chief's checkpoint of the last step
    options = json.loads((runs[0] / "training_options.json").read_text())
    assert options["num_replicas"] == 2
