"""GPU readiness check: every GPU path of tf3dstylegan in a few minutes, one JSON report (docs/gpu-check.md).

    python bench/gpu_check.py --out gpu_check.json               # a GPU machine: about 7 minutes
    python bench/gpu_check.py --dry_run --logical_cpus 2          # the same code paths on the CPU, tiny sizes
    KERAS_BACKEND=jax python bench/gpu_check.py --backend jax     # on JAX, without TensorFlow

Parts, in the order they run (the most telling first, so that the time budget cuts the least):
environment; train_run (sec/kimg of a real train.py run, input pipeline included); generator (a timed forward
pass per preset x precision x jit x fused modulated convolution, compared with strict float32 on the same
weights and latents); train_step (a timed G+D step as train.py builds it, its step-0 losses compared with
float32); mirrored (MirroredStrategy, or DataParallel on JAX, over all GPUs, or logical CPUs); max_batch (largest
training batch that fits). Every entry has status ok / failed / skipped and, unless ok, a one-line reason. A part
whose estimated time no longer fits --budget_s is skipped; at --budget_s + --grace_s the report is written as it
stands and the script exits with code 3. The JSON goes to stdout and --out (rewritten after every part).
"""
import gc
import importlib.util
import json
import os
import sys
import threading
import time
from itertools import product

from absl import app, flags

from gpu_check_report import (BACKEND_DEFAULTS, DRY_RUN_DEFAULTS, JIT_MODES, PARTS, PRECISIONS, Skipped, entries,
                              jsonable, one_line, path_name, summary)

JIT_GUESS = 2.0  # a jit part not yet measured is guessed at this many times its measured non-jit twin
DRY_RUN_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")


def define_flags(fv):
    """The command-line flags, defined on `fv`."""
    kw = dict(flag_values=fv)
    flags.DEFINE_enum("backend", None, list(BACKEND_DEFAULTS), "Keras backend (default: KERAS_BACKEND, else "
                      "tensorflow where it is importable, else jax).", **kw)
    flags.DEFINE_list("presets", ["2mm-fd16", "2mm-fd96", "1mm-fd16"], "Presets of generator and train_step.", **kw)
    flags.DEFINE_list("precisions", list(PRECISIONS), "Compute precisions (jax: float32, mixed_bfloat16).", **kw)
    flags.DEFINE_list("jit_modes", list(JIT_MODES), "XLA for the whole timed function: off and/or on (jax: on).",
                      **kw)
    flags.DEFINE_list("modconv", ["nonfused", "fused"], "Modulated convolution: nonfused and/or fused.", **kw)
    flags.DEFINE_bool("full_step_matrix", True, "train_step for every jit mode and modconv (else only the "
                      "backend's own jit mode, non-fused).", **kw)
    flags.DEFINE_list("parts", list(PARTS), "Parts to run.", **kw)
    flags.DEFINE_integer("batch", 4, "Batch of generator and train_step (per GPU for mirrored).", lower_bound=1, **kw)
    flags.DEFINE_integer("repeats", 5, "Timed calls after the warm-up calls.", lower_bound=1, **kw)
    flags.DEFINE_float("budget_s", 420, "Skip parts that would end after this many seconds from the start.", **kw)
    flags.DEFINE_float("grace_s", 60, "Hard deadline after --budget_s: write the report and exit 3.", **kw)
    flags.DEFINE_list("max_batch_presets", ["2mm-fd96", "1mm-fd16"], "Presets of max_batch.", **kw)
    flags.DEFINE_integer("max_batch_limit", 256, "max_batch stops doubling here.", lower_bound=1, **kw)
    flags.DEFINE_string("train_cfg", "2mm-fd96", "--cfg of the train.py run.", **kw)
    flags.DEFINE_float("train_seconds", 120, "Stop the train.py run (SIGTERM) after this many seconds, start-up "
                       "included.", **kw)
    flags.DEFINE_float("train_kimg", 1000, "--kimg of the train.py run (normally --train_seconds ends it first).", **kw)
    flags.DEFINE_integer("train_batch", None, "--batch of the train.py run (default: the preset's).", **kw)
    flags.DEFINE_float("train_tick_kimg", 0.5, "tick_kimg of the train.py run: a stats.jsonl record per tick.", **kw)
    flags.DEFINE_enum("train_precision", "float32", list(PRECISIONS), "--precision of the train.py run.", **kw)
    flags.DEFINE_string("mirrored_preset", "2mm-fd96", "Preset of the MirroredStrategy (DataParallel) step.", **kw)
    flags.DEFINE_bool("dry_run", False, "Tiny networks on the CPU, to check the script itself; sets " +
                      ", ".join(f"--{k}={v}" for k, v in DRY_RUN_DEFAULTS.items()) + " unless given.", **kw)
    flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many devices (mirrored without GPUs).", **kw)
    flags.DEFINE_integer("seed", 0, "Seed of weights, latents and reals.", **kw)
    flags.DEFINE_string("out", None, "Also write the JSON report here.", **kw)


class Check:
    """The parts, run in order within the budget; `parts` keeps the report."""

    def __init__(self, parts):
        self.parts, self.current, self.durations = parts, None, {}

    def run(self, entry, key, function, *args):
        """Fill `entry` from function(*args) (ok / failed / skipped) unless its estimate exceeds the budget."""
        if entry["status"] != "pending":
            return
        guess = self.durations.get(key, 0.0)
        if key[2] and key not in self.durations:
            guess = JIT_GUESS * self.durations.get(key[:2] + (False,), 0.0)
        left = self.parts.left()
        if left <= 0 or guess > left:
            entry.update(status="skipped", reason=f"time budget: {max(left, 0):.0f} s of --budget_s left, "
                                                  f"estimated {guess:.0f} s")
        else:
            with self.parts.lock:
                self.current = entry
            start = time.perf_counter()
            try:
                result, status = function(*args), "ok"
            except Skipped as err:
                result, status = {"reason": str(err)}, "skipped"
            except Exception as err:  # noqa: BLE001 - recorded; the other parts still run
                result, status = {"reason": one_line(err)}, "failed"
            with self.parts.lock:
                entry.update(result, status=status, seconds=time.perf_counter() - start)
                self.current = None
            self.durations[key] = max(self.durations.get(key, 0.0), entry["seconds"])
            gc.collect()
        print(f"[{time.perf_counter() - self.parts.start:5.0f} s] {entry['part']} {entry.get('path', '')}: "
              f"{entry['status']} {entry.get('reason', '')}", file=sys.stderr, flush=True)
        self.save()

    def save(self):
        with self.parts.lock:
            text = json.dumps(jsonable(self.parts.report), indent=1, allow_nan=False)
        if self.parts.opts.out:
            from tf3dstylegan.io import write_text_atomic
            write_text_atomic(self.parts.opts.out, text + "\n")
        return text

    def abort(self):
        """Hard deadline: the running part failed, the rest skipped; the report written; exit 3."""
        parts = self.parts
        with parts.lock:
            if parts.child is not None:
                parts.child.kill()
            for entry in entries(parts.report):
                if entry is self.current:
                    entry.update(status="failed", reason="still running at the hard deadline (--budget_s + --grace_s)")
                elif entry["status"] == "pending":
                    entry.update(status="skipped", reason="hard deadline (--budget_s + --grace_s) reached")
            parts.report["summary"] = summary(parts.report)
            print(self.save(), flush=True)
        os._exit(3)


def plan(parts):
    """Fill parts.report with pending entries; return (entry, estimate key, function, *args) in running order.

    Train steps at the backend's own jit mode (parts.baseline_jit) with non-fused modulated convolution come
    before mirrored and max_batch (which run that way too); the other train steps last."""
    opts, report, base = parts.opts, parts.report, parts.baseline_jit
    paths = sorted(product(opts.presets, opts.precisions, [m == "on" for m in opts.jit_modes],
                           [m == "fused" for m in opts.modconv]),
                   key=lambda p: (p[2] != base, p[3], opts.precisions.index(p[1]), opts.presets.index(p[0])))
    for part in ("generator", "train_step"):
        chosen = paths if part == "generator" or opts.full_step_matrix else [p for p in paths
                                                                             if p[2] == base and not p[3]]
        report[part] = [dict(part=part, path=path_name(*p), preset=p[0], precision=p[1], jit=p[2], fused_modconv=p[3],
                             status="pending") for p in chosen]
    report["environment"] = dict(part="environment", status="pending")
    report["train_run"] = dict(part="train_run", path=opts.train_cfg, status="pending")
    report["mirrored"] = dict(part="mirrored", path=path_name(opts.mirrored_preset, "float32", base, False),
                              status="pending")
    report["max_batch"] = [dict(part="max_batch", path=path_name(p, "float32", base, False), preset=p,
                                status="pending") for p in opts.max_batch_presets]
    for entry in entries(report):
        if entry["part"] not in opts.parts:
            entry.update(status="skipped", reason=f"not selected (--parts {','.join(opts.parts)})")
    steps = [(e, ("train_step", e["preset"], e["jit"]), parts.train_step,
              e["preset"], e["precision"], e["jit"], e["fused_modconv"]) for e in report["train_step"]]
    first_tier = [task for task in steps if task[0]["jit"] == base and not task[0]["fused_modconv"]]
    return [(report["environment"], ("environment", None, False), parts.environment),
            (report["train_run"], ("train_run", None, False), parts.train_run),
            *[(e, ("generator", e["preset"], e["jit"]), parts.generator, e["preset"], e["precision"], e["jit"],
               e["fused_modconv"]) for e in report["generator"]],
            *first_tier,
            (report["mirrored"], ("train_step", opts.mirrored_preset, base), parts.mirrored, opts.mirrored_preset),
            *[(e, ("train_step", e["preset"], base), parts.max_batch, e["preset"]) for e in report["max_batch"]],
            *[task for task in steps if task not in first_tier]]


def resolve_backend(opts):
    """--backend, else KERAS_BACKEND, else tensorflow where it is importable, else jax; UsageError on a conflict."""
    requested = os.environ.get("KERAS_BACKEND")
    backend = opts.backend or requested or ("tensorflow" if importlib.util.find_spec("tensorflow") else "jax")
    if backend not in BACKEND_DEFAULTS:
        raise app.UsageError(f"KERAS_BACKEND={backend}: the check runs on {' or '.join(BACKEND_DEFAULTS)}")
    if requested and requested != backend:
        raise app.UsageError(f"--backend {backend}: KERAS_BACKEND is {requested}; unset it or make them agree")
    return backend


def checked_options(opts, backend):
    """Apply the backend's and the dry run's defaults to the flags not given; UsageError for unknown values."""
    for defaults in (BACKEND_DEFAULTS[backend], DRY_RUN_DEFAULTS if opts.dry_run else {}):
        for name, value in defaults.items():
            if not opts[name].present:
                opts[name].value = value
    for name, known in (("parts", PARTS), ("precisions", PRECISIONS), ("jit_modes", JIT_MODES),
                        ("modconv", ("nonfused", "fused"))):
        unknown = [value for value in opts[name].value if value not in known]
        if unknown:
            raise app.UsageError(f"--{name}: unknown {unknown[0]!r}; choose from {', '.join(known)}")
    supported = BACKEND_DEFAULTS[backend]
    for name, values, known in (("precisions", opts.precisions, supported["precisions"]),
                                ("jit_modes", opts.jit_modes, supported["jit_modes"]),
                                ("train_precision", [opts.train_precision], supported["precisions"])):
        unsupported = [value for value in values if value not in known]
        if unsupported:
            raise app.UsageError(f"--{name}: {unsupported[0]!r} does not run on the {backend} backend; choose from "
                                 f"{', '.join(known)}")


def make_parts(opts, backend):
    """The backend's Parts, with the process environment set up before its framework is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if opts.dry_run and backend == "jax":  # tiny networks: XLA's CPU compiler without its costly passes, 4x faster
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *DRY_RUN_XLA_FLAGS]).strip()
    child_env = dict(os.environ)  # train.py runs as the check was started
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        from gpu_check_tf import TensorFlowParts
        return TensorFlowParts(opts, child_env)
    # Memory on demand, as TensorFlow's memory growth: room for the train.py process, and max_batch trials that
    # find what is free (JAX's default takes 75% of the GPU when it starts).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if opts.logical_cpus > 1:
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                            f"--xla_force_host_platform_device_count={opts.logical_cpus}"]).strip()
    from gpu_check_jax import JaxParts
    return JaxParts(opts, child_env)


def main(argv):
    opts = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    backend = resolve_backend(opts)
    checked_options(opts, backend)
    parts = make_parts(opts, backend)
    check = Check(parts)
    tasks = plan(parts)
    watchdog = threading.Timer(opts.budget_s + opts.grace_s, check.abort)
    watchdog.daemon = True
    watchdog.start()
    for entry, key, function, *args in tasks:
        check.run(entry, key, function, *args)
    watchdog.cancel()
    with parts.lock:
        parts.report.update(complete=True, elapsed_s=time.perf_counter() - parts.start, summary=summary(parts.report))
    print(check.save(), flush=True)


if __name__ == "__main__":
    define_flags(flags.FLAGS)
    app.run(main)
