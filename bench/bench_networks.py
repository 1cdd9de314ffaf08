"""Generator inference and one G+D training step per preset: volumes/s, seconds, peak RSS, FLOPs.

    python bench/bench_networks.py --presets 2mm-fd16,2mm-fd32 --batch 2 --what infer,train
Each measurement runs in a fresh subprocess (so peak RSS is its own: VmHWM, see proc_memory.py) and
prints one JSON line with the peak, the resident size right after `import tensorflow` (the runtime,
the same for any TF program) and the difference (what the work itself took); a summary JSON list goes
to --out. The training step is the one the original was timed with: G non-saturating logistic step
then D logistic step, forward and backward, plain Adam, no regularisers.
"""
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from proc_memory import proc_status_gb

flags.DEFINE_list("presets", ["2mm-fd16", "2mm-fd32", "2mm-fd64", "2mm-fd96", "1mm-fd16"], "Presets.")
flags.DEFINE_list("what", ["infer", "train"], "infer and/or train.")
flags.DEFINE_integer("batch", 2, "Batch size.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions after one warm-up.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Compute precision.")
flags.DEFINE_bool("jit", False, "XLA-compile the timed function.")
flags.DEFINE_bool("gradient_checkpointing", False, "Recompute block activations in the backward pass.")
flags.DEFINE_integer("slab_size", 0, "Compute the generator's last level in slabs of this many rows (0: whole).",
                     lower_bound=0)
flags.DEFINE_multi_string("override", [], "Config field override key=value for every preset (repeatable), "
                          "e.g. fmap_min=32 fmap_max=32 to measure a 1mm-fd32 variant.")
flags.DEFINE_string("out", None, "Write the list of results as JSON here.")
flags.DEFINE_string("child", None, "Internal: run one measurement 'preset:what'.")
FLAGS = flags.FLAGS


def generator_flops(cfg, batch):
    """Multiply-adds x2 of one generator pass (convolutions, FIR filters and mapping)."""
    macs = cfg.mapping_layers * cfg.mapping_fmaps * max(cfg.latent_size, cfg.mapping_fmaps)

    def voxels(r):
        return int(np.prod([b * 2 ** (r - 2) for b in cfg.base_size]))
    macs += 27 * cfg.nf(1) ** 2 * voxels(2)
    cin = cfg.nf(1)
    for r in range(3, cfg.resolution_log2 + 1):
        out = cfg.nf(r - 1)
        macs += 27 * cin * out * voxels(r - 1)            # stride-2 transposed conv: 27 taps per input voxel
        macs += 3 * 5 * out * voxels(r)                   # separable 5-tap FIR, three passes
        macs += 27 * out * out * voxels(r)
        cin = out
    macs += cin * cfg.num_channels * voxels(cfg.resolution_log2)
    return 2 * macs * batch


def matmul_peak_gflops(n=4096, repeats=8):
    """Float32 GFLOP/s of the fastest of `repeats` [n, n] x [n, n] matmuls."""
    import tensorflow as tf
    a = tf.random.normal([n, n])
    tf.matmul(a, a).numpy()
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, a).numpy()
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * n ** 3 / fastest / 1e9


def measure(preset, what):
    import tensorflow as tf
    rss_after_import = proc_status_gb("VmRSS")
    import keras
    if FLAGS.precision != "float32":
        keras.mixed_precision.set_global_policy(FLAGS.precision)
    import tf3dstylegan
    from tf3dstylegan.config import parse_override
    overrides = dict(parse_override(text) for text in FLAGS.override)
    G, D = tf3dstylegan.build_networks(preset, gradient_checkpointing=FLAGS.gradient_checkpointing, **overrides)
    G.synthesis.slab_size = FLAGS.slab_size
    batch = FLAGS.batch
    z = tf.random.normal([batch, G.latent_size])
    if what == "infer":
        fn = tf.function(lambda z: G(z), jit_compile=FLAGS.jit)
    else:
        reals = tf.random.uniform([batch, *G.img_shape, G.num_channels], -1, 1)
        g_opt, d_opt = keras.optimizers.Adam(0.002, 0.0, 0.99, 1e-8), keras.optimizers.Adam(0.002, 0.0, 0.99, 1e-8)

        def step(z):
            with tf.GradientTape() as tape:
                g_loss = tf.reduce_mean(tf.nn.softplus(-D(G.synthesis(G.training_styles(z), noise_mode="random"))))
            g_opt.apply_gradients(zip(tape.gradient(g_loss, G.trainable_weights), G.trainable_weights))
            # Outside the tape: D's step needs no G activations.
            fakes = G.synthesis(G.training_styles(z), noise_mode="random")
            with tf.GradientTape() as tape:
                d_loss = tf.reduce_mean(tf.nn.softplus(D(fakes))) + tf.reduce_mean(tf.nn.softplus(-D(reals)))
            d_opt.apply_gradients(zip(tape.gradient(d_loss, D.trainable_weights), D.trainable_weights))
            return g_loss + d_loss
        fn = tf.function(step, jit_compile=FLAGS.jit)
    start = time.perf_counter()
    fn(z).numpy()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FLAGS.repeats):
        fn(z).numpy()
    seconds = (time.perf_counter() - start) / FLAGS.repeats
    peak = proc_status_gb("VmHWM")
    result = {"preset": preset, "overrides": FLAGS.override, "what": what, "batch": batch,
              "precision": FLAGS.precision, "jit": FLAGS.jit,
              "gradient_checkpointing": FLAGS.gradient_checkpointing, "slab_size": FLAGS.slab_size,
              "seconds_per_batch": seconds, "volumes_per_s": batch / seconds, "first_call_s": warmup,
              "rss_after_import_gb": rss_after_import, "peak_rss_gb": peak,
              "peak_above_import_gb": peak - rss_after_import}
    if what == "infer":
        flops = generator_flops(G.config, batch)
        result.update(gflop=flops / 1e9, achieved_gflops=flops / seconds / 1e9)
        if FLAGS.precision != "float32":
            result.update(difference_to_float32(G, z))
    return result


def difference_to_float32(G, z):
    """Max and mean |volume - float32 volume| (volumes span [-1, 1]) for the same weights and latents."""
    import keras
    from tf3dstylegan.networks import build_generator
    volumes = G(z).numpy()
    keras.mixed_precision.set_global_policy("float32")
    reference = build_generator(G.config)
    reference.set_weights(G.get_weights())
    expected = reference(z).numpy()
    diff = np.abs(volumes - expected)
    return {"max_abs_diff_vs_float32": float(diff.max()), "mean_abs_diff_vs_float32": float(diff.mean()),
            "float32_volume_std": float(expected.std())}


def main(argv):
    if FLAGS.child:
        print(json.dumps(measure(*FLAGS.child.split(":"))), flush=True)
        return
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "matmul_peak_gflops": round(matmul_peak_gflops(), 1)}
    print(json.dumps({"machine": machine}), flush=True)
    results = []
    for preset in FLAGS.presets:
        for what in FLAGS.what:
            cmd = [sys.executable, __file__, f"--child={preset}:{what}", f"--batch={FLAGS.batch}",
                   f"--repeats={FLAGS.repeats}", f"--precision={FLAGS.precision}", f"--jit={FLAGS.jit}",
                   f"--gradient_checkpointing={FLAGS.gradient_checkpointing}", f"--slab_size={FLAGS.slab_size}",
                   *[f"--override={text}" for text in FLAGS.override]]
            run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
            if run.returncode == 0 and lines:
                result = json.loads(lines[-1])
            else:
                errors = [line for line in run.stderr.splitlines() if "Error" in line] or ["?"]
                reason = f"killed by signal {-run.returncode} (out of memory?)" if run.returncode < 0 else errors[-1]
                result = {"preset": preset, "overrides": FLAGS.override, "what": what, "error": reason}
            if "achieved_gflops" in result:
                result["fraction_of_matmul_peak"] = result["achieved_gflops"] / machine["matmul_peak_gflops"]
            print(json.dumps(result), flush=True)
            results.append(result)
    if FLAGS.out:
        with open(FLAGS.out + ".tmp", "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=2)
        os.replace(FLAGS.out + ".tmp", FLAGS.out)


if __name__ == "__main__":
    app.run(main)
