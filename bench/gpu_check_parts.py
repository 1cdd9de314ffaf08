"""The timed parts of bench/gpu_check.py: environment, train_run, generator, train_step, mirrored, max_batch."""
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from gpu_check_report import (STEP0_COMPARED, TINY, OutOfTime, Skipped, agreement, dtype_policy, is_out_of_memory,
                              json_lines, one_line, path_name, search_largest_batch, strict_float32, tick_summary)

REPO = Path(__file__).resolve().parent.parent


def build_train_step(cfg, strategy, precision, fused, weights, batch, jit, seed):
    """TrainStep over fresh G, D, G_ema (from `weights`), optimizers and pl_mean, built as training builds them."""
    import tensorflow as tf
    from tf3dstylegan.networks import build_discriminator, build_generator
    from tf3dstylegan.backend.tensorflow.state import build_optimizers
    from tf3dstylegan.backend.tensorflow.step import TrainStep
    with dtype_policy(precision), strategy.scope():
        G, D = build_generator(cfg, fused_modconv=fused), build_discriminator(cfg)
        G_ema = build_generator(cfg, fused_modconv=fused)
        for model, values in ((G, weights[0]), (D, weights[1]), (G_ema, weights[0])):
            model.set_weights(values)
        g_opt, d_opt, pl_mean = build_optimizers(cfg, precision, G, D)
    rng = tf.random.Generator.from_seed(seed)
    return TrainStep(cfg, strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean, batch, jit=jit)


def time_train_step(step, local_reals, repeats):
    """Step 0 (lazy regularisers due: traces), step 1 (none due: traces), then timed calls of each."""
    reals = step.strategy.experimental_distribute_values_from_function(lambda _: local_reals)

    def call(index):
        start = time.perf_counter()
        stats = {key: float(value) for key, value in step(reals, index).items()}
        return time.perf_counter() - start, stats
    first_s, stats0 = call(0)
    second_s, _ = call(1)
    plain_s = sum(call(1)[0] for _ in range(repeats)) / repeats
    reg_s, _ = call(0)
    cycle = math.lcm(step.cfg.g_reg_interval or 1, step.cfg.d_reg_interval or 1)
    amortized = sum(reg_s if any(step.phases(i)) else plain_s for i in range(cycle)) / cycle
    return {"batch": step.batch, "first_call_s": first_s, "second_call_s": second_s, "step_s": plain_s,
            "reg_step_s": reg_s, "amortized_step_s": amortized, "sec_per_kimg": amortized / step.batch * 1000,
            "step0_stats": stats0}


class Parts:
    """The parts of the check (each returns its report entry's fields) and the state they share."""

    def __init__(self, opts):
        import tensorflow as tf
        self.tf, self.opts, self.start = tf, opts, time.perf_counter()
        self.gpus = tf.config.list_physical_devices("GPU")
        self.memory_device = "GPU:0" if self.gpus else None  # get_memory_info does not track the CPU
        self.lock, self.child = threading.RLock(), None
        self.references = {}
        self.report = {"argv": sys.argv[1:], "dry_run": opts.dry_run, "budget_s": opts.budget_s,
                       "grace_s": opts.grace_s, "complete": False,
                       "settings": {name: opts[name].value for name in ("batch", "repeats", "max_batch_limit",
                                                                        "train_seconds", "seed")}}

    def left(self):
        return self.opts.budget_s - (time.perf_counter() - self.start)

    def reference(self, preset):
        """Initial float32 weights, latents, reals and strict-float32 volumes of a preset (made once)."""
        if preset not in self.references:
            import keras
            from tf3dstylegan import load_config
            from tf3dstylegan.networks import build_discriminator, build_generator
            tf, seed, batch = self.tf, self.opts.seed, self.opts.batch
            cfg = load_config(preset, **(TINY if self.opts.dry_run else {}))
            keras.utils.set_random_seed(seed)
            G, D = build_generator(cfg), build_discriminator(cfg)
            z = tf.random.stateless_normal([batch, G.latent_size], [seed, 0])
            reals = tf.random.stateless_uniform([batch, *cfg.img_shape, cfg.num_channels], [seed, 1], -1.0, 1.0)
            with strict_float32():
                volumes = G(z).numpy()
            self.references[preset] = dict(cfg=cfg, weights=(G.get_weights(), D.get_weights()), z=z, reals=reals,
                                           volumes=volumes)
        return self.references[preset]

    def reset_memory(self):
        if self.memory_device:
            self.tf.config.experimental.reset_memory_stats(self.memory_device)

    def peak_memory_mb(self):
        if self.memory_device:
            return self.tf.config.experimental.get_memory_info(self.memory_device)["peak"] / 2 ** 20
        return None

    def environment(self):
        import keras
        tf = self.tf
        build = tf.sysconfig.get_build_info()
        result = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                  "numpy": np.__version__, "cpu_count": os.cpu_count(),
                  "build": {key: build.get(key) for key in ("is_cuda_build", "cuda_version", "cudnn_version",
                                                            "cuda_compute_capabilities")},
                  "devices": [d.name for d in tf.config.list_logical_devices()],
                  "gpus": [dict(tf.config.experimental.get_device_details(gpu), name=gpu.name) for gpu in self.gpus],
                  "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled(),
                  "env": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "TF_XLA_FLAGS", "XLA_FLAGS",
                                                     "TF_GPU_ALLOCATOR") if k in os.environ}}
        if shutil.which("nvidia-smi"):
            query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            result["nvidia_smi"] = query.stdout.strip().splitlines() or query.stderr.strip()[:400]
        return result

    def train_run(self):
        opts = self.opts
        outdir = Path(tempfile.mkdtemp(prefix="gpu_check_train_"))
        command = [sys.executable, str(REPO / "train.py"), "--cfg", opts.train_cfg, "--kimg", str(opts.train_kimg),
                   "--outdir", str(outdir), "--resume", "none", "--precision", opts.train_precision]
        command += ["--batch", str(opts.train_batch)] if opts.train_batch else []
        # Snapshots (.keras, previews) only at the start and the end: more ticks in the time.
        overrides = dict(TINY if opts.dry_run else {}, tick_kimg=opts.train_tick_kimg, snapshot_ticks=10 ** 6)
        command += [arg for key, value in overrides.items() for arg in ("--override", f"{key}={json.dumps(value)}")]
        start, stopped = time.perf_counter(), False
        try:
            with open(outdir / "train.log", "w") as log:
                with self.lock:
                    self.child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
                try:
                    code = self.child.wait(max(1.0, min(opts.train_seconds, self.left())))
                except subprocess.TimeoutExpired:
                    stopped = True
                    self.child.terminate()  # train.py finishes its step, writes a checkpoint and stops
                    try:
                        code = self.child.wait(60)
                    except subprocess.TimeoutExpired:
                        self.child.kill()
                        code = self.child.wait()
            wall = time.perf_counter() - start
            records = [record for path in outdir.glob("*/stats.jsonl") for record in json_lines(path)]
            lines = [line for line in (outdir / "train.log").read_text().splitlines() if line.strip()]
        finally:
            with self.lock:
                self.child = None
            shutil.rmtree(outdir, ignore_errors=True)
        if (code and not stopped) or not records:
            raise RuntimeError(f"train.py {'was stopped' if stopped else f'exited {code}'} after {wall:.0f} s "
                               f"with {len(records)} ticks: {lines[-1] if lines else 'no output'}")
        return dict(tick_summary(records), command=" ".join(command).replace(str(outdir), "TMP"), exit_code=code,
                    stopped_at_train_seconds=stopped, wall_s=wall, gpus=len(self.gpus))

    def generator(self, preset, precision, jit, fused):
        from tf3dstylegan.networks import build_generator
        ref = self.reference(preset)
        with dtype_policy(precision):
            G = build_generator(ref["cfg"], fused_modconv=fused)
        G.set_weights(ref["weights"][0])
        forward = self.tf.function(lambda z: G(z), jit_compile=jit)
        self.reset_memory()
        start = time.perf_counter()
        volumes = forward(ref["z"]).numpy()
        first_s, start = time.perf_counter() - start, time.perf_counter()
        for _ in range(self.opts.repeats):
            volumes = forward(ref["z"]).numpy()
        seconds = (time.perf_counter() - start) / self.opts.repeats
        return {"batch": self.opts.batch, "first_call_s": first_s, "seconds_per_call": seconds,
                "volumes_per_s": self.opts.batch / seconds, "peak_memory_mb": self.peak_memory_mb(),
                "agreement_vs_strict_float32": agreement(volumes, ref["volumes"], precision)}

    def train_step(self, preset, precision, jit, fused):
        ref = self.reference(preset)
        step = build_train_step(ref["cfg"], self.tf.distribute.get_strategy(), precision, fused, ref["weights"],
                                self.opts.batch, jit, self.opts.seed)
        self.reset_memory()
        result = time_train_step(step, ref["reals"], self.opts.repeats)
        result["peak_memory_mb"] = self.peak_memory_mb()
        stats = [result["step0_stats"][key] for key in STEP0_COMPARED]
        if (precision, jit, fused) == ("float32", False, False):
            ref["step0"], result["step0_reference"] = stats, True
        elif "step0" in ref:
            result["step0_agreement_vs_float32"] = dict(agreement(stats, ref["step0"], precision),
                                                        compared=list(STEP0_COMPARED))
        return result

    def mirrored(self, preset):
        tf = self.tf
        if len(self.gpus) > 1:
            devices = [gpu.name.replace("/physical_device:", "/") for gpu in self.gpus]
        elif not self.gpus and len(tf.config.list_logical_devices("CPU")) > 1:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        else:
            raise Skipped(f"{len(self.gpus)} GPU visible: MirroredStrategy needs several (without GPUs: "
                          f"--logical_cpus 2)")
        ref = self.reference(preset)
        strategy = tf.distribute.MirroredStrategy(devices)
        step = build_train_step(ref["cfg"], strategy, "float32", False, ref["weights"],
                                self.opts.batch * len(devices), False, self.opts.seed)
        self.reset_memory()
        result = time_train_step(step, ref["reals"], self.opts.repeats)
        single = [e["step_s"] for e in self.report["train_step"]
                  if e["status"] == "ok" and e["path"] == path_name(preset, "float32", False, False)]
        return dict(result, devices=devices, per_replica_batch=self.opts.batch, peak_memory_mb=self.peak_memory_mb(),
                    single_device_step_s=single[0] if single else None,
                    scaling_efficiency=single[0] / result["step_s"] if single else None)

    def max_batch(self, preset):
        """Largest batch whose step 0 (G step, path-length regulariser, D step) runs in float32."""
        from tf3dstylegan.backend.tensorflow.step import TrainStep
        tf, ref = self.tf, self.reference(preset)
        cfg, strategy = ref["cfg"], tf.distribute.get_strategy()
        base = build_train_step(cfg, strategy, "float32", False, ref["weights"], 1, False, self.opts.seed)
        trials = []

        def fits(batch):
            if trials and self.left() < 2 * trials[-1]["seconds"]:
                raise OutOfTime
            step = TrainStep(cfg, strategy, base.G, base.D, base.G_ema, base.g_opt, base.d_opt, base.rng,
                             base.pl_mean, batch)
            trial, start = {"batch": batch}, time.perf_counter()
            self.reset_memory()
            try:
                reals = tf.random.uniform([batch, *cfg.img_shape, cfg.num_channels], -1.0, 1.0)
                values = step(strategy.experimental_distribute_values_from_function(lambda _: reals), 0).values()
                finite = all(math.isfinite(float(v)) for v in values)
                trial.update(fits=True, finite_losses=finite, peak_memory_mb=self.peak_memory_mb())
            except Exception as err:  # noqa: BLE001 - only out-of-memory means "does not fit"
                if not is_out_of_memory(err):
                    raise
                trial.update(fits=False, reason=one_line(err))
            del step
            gc.collect()
            trials.append(dict(trial, seconds=time.perf_counter() - start))
            return trial["fits"]
        multiple = max(1, cfg.mbstd_group_size)
        try:
            lo, hi, bounded_by = search_largest_batch(fits, self.opts.batch, self.opts.max_batch_limit, multiple)
        except OutOfTime:
            lo = max((t["batch"] for t in trials if t["fits"]), default=None)
            hi, bounded_by = min((t["batch"] for t in trials if not t["fits"]), default=None), "time budget"
        return {"largest_fitting_batch": lo, "smallest_failing_batch": hi, "bounded_by": bounded_by,
                "precision": "float32", "trials": trials}
