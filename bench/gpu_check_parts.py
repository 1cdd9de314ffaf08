"""The parts of bench/gpu_check.py on any backend: environment, train_run, generator, train_step, mirrored, max_batch.

A backend's subclass (gpu_check_tf.TensorFlowParts, gpu_check_jax.JaxParts) says how to compile a generator pass,
build and run a training step, place data, read device memory and recognise out-of-memory errors.
"""
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

from gpu_check_report import (STEP0_COMPARED, TINY, OutOfTime, agreement, dtype_policy, json_lines, one_line,
                              path_name, search_largest_batch, tick_summary)

REPO = Path(__file__).resolve().parent.parent


def time_train_step(runner, cfg, repeats):
    """Step 0 (lazy regularisers due: compiles), step 1 (none due: compiles), each once more (a recompile shows
    there: state placed otherwise than the step's outputs), then timed calls of each.

    runner(index) runs step `index` and returns its {name: float} (waiting for the device); runner.batch."""
    from tf3dstylegan.training.optimizers import regularisation_due

    def call(index):
        start = time.perf_counter()
        stats = runner(index)
        return time.perf_counter() - start, stats
    first_s, stats0 = call(0)
    second_s, _ = call(1)
    second_round = {"reg_step_s": call(0)[0], "step_s": call(1)[0]}
    plain_s = sum(call(1)[0] for _ in range(repeats)) / repeats
    reg_s, _ = call(0)
    cycle = math.lcm(cfg.g_reg_interval or 1, cfg.d_reg_interval or 1)
    amortized = sum(reg_s if any(regularisation_due(cfg, i)) else plain_s for i in range(cycle)) / cycle
    return {"batch": runner.batch, "first_call_s": first_s, "second_call_s": second_s,
            "second_round": second_round, "step_s": plain_s,
            "reg_step_s": reg_s, "amortized_step_s": amortized, "sec_per_kimg": amortized / runner.batch * 1000,
            "step0_stats": stats0}


class Parts:
    """The parts of the check (each returns its report entry's fields) and the state they share.

    A subclass sets `backend` and `baseline_jit` (the jit mode of train.py's step: off on TensorFlow, always on
    on JAX) and implements: accelerators(), backend_environment(), strict_volumes(G, z), forward(G, jit),
    networks(cfg, precision, fused, weights, devices=None), runner(networks, batch, jit, reals),
    random_reals(shape), parallel_devices(), reset_memory(), peak_memory_mb(), is_out_of_memory(err)."""
    backend = None
    baseline_jit = False

    def __init__(self, opts, child_env):
        """child_env: the environment train.py runs in (the one the check was started with)."""
        self.opts, self.child_env, self.start = opts, child_env, time.perf_counter()
        self.lock, self.child = threading.RLock(), None
        self.references = {}
        self.report = {"argv": sys.argv[1:], "backend": self.backend, "dry_run": opts.dry_run,
                       "budget_s": opts.budget_s, "grace_s": opts.grace_s, "complete": False,
                       "settings": {name: opts[name].value for name in ("batch", "repeats", "max_batch_limit",
                                                                        "train_seconds", "seed")}}

    def left(self):
        return self.opts.budget_s - (time.perf_counter() - self.start)

    def config(self, preset):
        from tf3dstylegan import load_config
        return load_config(preset, **(TINY if self.opts.dry_run else {}))

    def reference(self, preset):
        """Initial float32 weights, latents, reals and strict-float32 volumes of a preset (made once)."""
        if preset not in self.references:
            import keras
            from tf3dstylegan.networks import build_discriminator, build_generator
            seed, batch = self.opts.seed, self.opts.batch
            cfg = self.config(preset)
            keras.utils.set_random_seed(seed)
            G, D = build_generator(cfg), build_discriminator(cfg)
            rng = np.random.default_rng(seed)
            z = rng.standard_normal((batch, G.latent_size)).astype(np.float32)
            reals = rng.uniform(-1.0, 1.0, (batch, *cfg.img_shape, cfg.num_channels)).astype(np.float32)
            self.references[preset] = dict(cfg=cfg, weights=(G.get_weights(), D.get_weights()), z=z, reals=reals,
                                           volumes=self.strict_volumes(G, z))
        return self.references[preset]

    def forward_memory(self, forward, z):
        """Memory figures of a compiled generator pass beyond the device's peak (none by default)."""
        return {}

    def environment(self):
        import keras
        result = {"python": platform.python_version(), "keras": keras.__version__,
                  "keras_backend": keras.backend.backend(), "numpy": np.__version__, "cpu_count": os.cpu_count(),
                  **self.backend_environment()}
        if shutil.which("nvidia-smi"):
            query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            result["nvidia_smi"] = query.stdout.strip().splitlines() or query.stderr.strip()[:400]
        return result

    def train_run(self):
        opts = self.opts
        from tf3dstylegan.data import demo_dataset
        start = time.perf_counter()  # the demo records first, outside the timed run (train.py finds them cached)
        demo_dataset(voxel_size=self.config(opts.train_cfg).voxel_size)
        demo_data_s = time.perf_counter() - start
        outdir = Path(tempfile.mkdtemp(prefix="gpu_check_train_"))
        command = [sys.executable, str(REPO / "train.py"), "--cfg", opts.train_cfg, "--kimg", str(opts.train_kimg),
                   "--outdir", str(outdir), "--resume", "none", "--precision", opts.train_precision]
        command += ["--batch", str(opts.train_batch)] if opts.train_batch else []
        # Snapshots (.keras, previews) only at the start and the end: more ticks in the time.
        overrides = dict(TINY if opts.dry_run else {}, tick_kimg=opts.train_tick_kimg, snapshot_ticks=10 ** 6)
        command += [arg for key, value in overrides.items() for arg in ("--override", f"{key}={json.dumps(value)}")]
        env = dict(self.child_env, KERAS_BACKEND=self.backend)
        start, stopped = time.perf_counter(), False
        try:
            with open(outdir / "train.log", "w") as log:
                with self.lock:
                    self.child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
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
                    stopped_at_train_seconds=stopped, wall_s=wall, demo_data_s=demo_data_s,
                    gpus=len(self.accelerators()))

    def generator(self, preset, precision, jit, fused):
        from tf3dstylegan.networks import build_generator
        ref = self.reference(preset)
        with dtype_policy(precision):
            G = build_generator(ref["cfg"], fused_modconv=fused)
        G.set_weights(ref["weights"][0])
        forward = self.forward(G, jit)
        self.reset_memory()
        start = time.perf_counter()
        volumes = forward(ref["z"])
        first_s, start = time.perf_counter() - start, time.perf_counter()
        for _ in range(self.opts.repeats):
            volumes = forward(ref["z"])
        seconds = (time.perf_counter() - start) / self.opts.repeats
        return {"batch": self.opts.batch, "first_call_s": first_s, "seconds_per_call": seconds,
                "volumes_per_s": self.opts.batch / seconds, "peak_memory_mb": self.peak_memory_mb(),
                **self.forward_memory(forward, ref["z"]),
                "agreement_vs_strict_float32": agreement(volumes, ref["volumes"], precision)}

    def train_step(self, preset, precision, jit, fused):
        ref = self.reference(preset)
        runner = self.runner(self.networks(ref["cfg"], precision, fused, ref["weights"]), self.opts.batch, jit,
                             ref["reals"])
        self.reset_memory()
        result = time_train_step(runner, ref["cfg"], self.opts.repeats)
        result.update(peak_memory_mb=self.peak_memory_mb(), **runner.compiled_memory())
        stats = [result["step0_stats"][key] for key in STEP0_COMPARED]
        if (precision, jit, fused) == ("float32", self.baseline_jit, False):
            ref["step0"], result["step0_reference"] = stats, True
        elif "step0" in ref:
            result["step0_agreement_vs_float32"] = dict(agreement(stats, ref["step0"], precision),
                                                        compared=list(STEP0_COMPARED))
        return result

    def mirrored(self, preset):
        """The float32 step with the weights on every device and the batch split over them (weak scaling)."""
        devices = self.parallel_devices()
        ref = self.reference(preset)
        networks = self.networks(ref["cfg"], "float32", False, ref["weights"], devices)
        runner = self.runner(networks, self.opts.batch * len(devices), self.baseline_jit,
                             np.concatenate([ref["reals"]] * len(devices)))
        self.reset_memory()
        result = time_train_step(runner, ref["cfg"], self.opts.repeats)
        single = [e["step_s"] for e in self.report["train_step"]
                  if e["status"] == "ok" and e["path"] == path_name(preset, "float32", self.baseline_jit, False)]
        return dict(result, devices=[str(d) for d in devices], strategy=runner.description,
                    per_replica_batch=self.opts.batch, peak_memory_mb=self.peak_memory_mb(),
                    single_device_step_s=single[0] if single else None,
                    scaling_efficiency=single[0] / result["step_s"] if single else None)

    def max_batch(self, preset):
        """Largest batch whose step 0 (G step, path-length regulariser, D step) runs in float32."""
        ref = self.reference(preset)
        cfg = ref["cfg"]
        networks = self.networks(cfg, "float32", False, ref["weights"])
        trials = []

        def fits(batch):
            if trials and self.left() < 2 * trials[-1]["seconds"]:
                raise OutOfTime
            trial, start, runner = {"batch": batch}, time.perf_counter(), None
            self.reset_memory()
            try:
                runner = self.runner(networks, batch, self.baseline_jit,
                                     self.random_reals((batch, *cfg.img_shape, cfg.num_channels)))
                finite = all(math.isfinite(v) for v in runner(0).values())
                trial.update(fits=True, finite_losses=finite, peak_memory_mb=self.peak_memory_mb(),
                             **runner.compiled_memory())
            except Exception as err:  # noqa: BLE001 - only out-of-memory means "does not fit"
                if not self.is_out_of_memory(err):
                    raise
                trial.update(fits=False, reason=one_line(err))
            del runner
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
