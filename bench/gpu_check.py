"""GPU readiness check: every GPU path of tf3dstylegan in a few minutes, one JSON report (docs/gpu-check.md).

    python bench/gpu_check.py --out gpu_check.json               # a GPU machine: about 7 minutes
    python bench/gpu_check.py --dry_run --logical_cpus 2          # the same code paths on the CPU, tiny sizes

Parts, in the order they run (the most telling first, so that the time budget cuts the least):
environment; train_run (sec/kimg of a real train.py run, input pipeline included); generator (a timed forward
pass per preset x precision x jit x fused modulated convolution, compared with strict float32 on the same
weights and latents); train_step (a timed G+D step as train.py builds it, its step-0 losses compared with
float32); mirrored (MirroredStrategy over all GPUs, or logical CPUs); max_batch (largest training batch that
fits). Every entry has status ok / failed / skipped and, unless ok, a one-line reason. A part whose estimated
time no longer fits --budget_s is skipped; at --budget_s + --grace_s the report is written as it stands and
the script exits with code 3. The JSON goes to stdout and --out (rewritten after every part).
"""
import gc
import json
import os
import sys
import threading
import time
from itertools import product

from absl import app, flags

from gpu_check_parts import Parts
from gpu_check_report import (DRY_RUN_DEFAULTS, PARTS, PRECISIONS, Skipped, entries, jsonable, one_line, path_name,
                              summary)

JIT_GUESS = 2.0  # a jit part not yet measured is guessed at this many times its measured non-jit twin


def define_flags(fv):
    """The command-line flags, defined on `fv`."""
    kw = dict(flag_values=fv)
    flags.DEFINE_list("presets", ["2mm-fd16", "2mm-fd96", "1mm-fd16"], "Presets of generator and train_step.", **kw)
    flags.DEFINE_list("precisions", list(PRECISIONS), "Compute precisions.", **kw)
    flags.DEFINE_list("jit_modes", ["off", "on"], "XLA for the whole timed function: off and/or on.", **kw)
    flags.DEFINE_list("modconv", ["nonfused", "fused"], "Modulated convolution: nonfused and/or fused.", **kw)
    flags.DEFINE_bool("full_step_matrix", True, "train_step for every jit mode and modconv (else only jit off, "
                      "non-fused).", **kw)
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
    flags.DEFINE_string("mirrored_preset", "2mm-fd96", "Preset of the MirroredStrategy step.", **kw)
    flags.DEFINE_bool("dry_run", False, "Tiny networks on the CPU, to check the script itself; sets " +
                      ", ".join(f"--{k}={v}" for k, v in DRY_RUN_DEFAULTS.items()) + " unless given.", **kw)
    flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many logical devices (mirrored, no GPU).", **kw)
    flags.DEFINE_integer("seed", 0, "Seed of weights, latents and reals.", **kw)
    flags.DEFINE_string("out", None, "Also write the JSON report here.", **kw)


class Check(Parts):
    """The parts, run in order within the budget; keeps the report."""

    def __init__(self, opts):
        super().__init__(opts)
        self.current, self.durations = None, {}

    def run(self, entry, key, function, *args):
        """Fill `entry` from function(*args) (ok / failed / skipped) unless its estimate exceeds the budget."""
        if entry["status"] != "pending":
            return
        guess = self.durations.get(key, 0.0)
        if key[2] and key not in self.durations:
            guess = JIT_GUESS * self.durations.get(key[:2] + (False,), 0.0)
        left = self.left()
        if left <= 0 or guess > left:
            entry.update(status="skipped", reason=f"time budget: {max(left, 0):.0f} s of --budget_s left, "
                                                  f"estimated {guess:.0f} s")
        else:
            with self.lock:
                self.current = entry
            start = time.perf_counter()
            try:
                result, status = function(*args), "ok"
            except Skipped as err:
                result, status = {"reason": str(err)}, "skipped"
            except Exception as err:  # noqa: BLE001 - recorded; the other parts still run
                result, status = {"reason": one_line(err)}, "failed"
            with self.lock:
                entry.update(result, status=status, seconds=time.perf_counter() - start)
                self.current = None
            self.durations[key] = max(self.durations.get(key, 0.0), entry["seconds"])
            gc.collect()
        print(f"[{time.perf_counter() - self.start:5.0f} s] {entry['part']} {entry.get('path', '')}: "
              f"{entry['status']} {entry.get('reason', '')}", file=sys.stderr, flush=True)
        self.save()

    def save(self):
        with self.lock:
            text = json.dumps(jsonable(self.report), indent=1, allow_nan=False)
        if self.opts.out:
            from tf3dstylegan.io import write_text_atomic
            write_text_atomic(self.opts.out, text + "\n")
        return text

    def abort(self):
        """Hard deadline: the running part failed, the rest skipped; the report written; exit 3."""
        with self.lock:
            if self.child is not None:
                self.child.kill()
            for entry in entries(self.report):
                if entry is self.current:
                    entry.update(status="failed", reason="still running at the hard deadline (--budget_s + --grace_s)")
                elif entry["status"] == "pending":
                    entry.update(status="skipped", reason="hard deadline (--budget_s + --grace_s) reached")
            self.report["summary"] = summary(self.report)
            print(self.save(), flush=True)
        os._exit(3)



def plan(check):
    """Fill the report with pending entries; return (entry, estimate key, function, *args) in running order."""
    opts, report = check.opts, check.report
    paths = sorted(product(opts.presets, opts.precisions, [m == "on" for m in opts.jit_modes],
                           [m == "fused" for m in opts.modconv]),
                   key=lambda p: (p[2], p[3], opts.precisions.index(p[1]), opts.presets.index(p[0])))
    for part in ("generator", "train_step"):
        chosen = paths if part == "generator" or opts.full_step_matrix else [p for p in paths if not (p[2] or p[3])]
        report[part] = [dict(part=part, path=path_name(*p), preset=p[0], precision=p[1], jit=p[2], fused_modconv=p[3],
                             status="pending") for p in chosen]
    report["environment"] = dict(part="environment", status="pending")
    report["train_run"] = dict(part="train_run", path=opts.train_cfg, status="pending")
    report["mirrored"] = dict(part="mirrored", path=path_name(opts.mirrored_preset, "float32", False, False),
                              status="pending")
    report["max_batch"] = [dict(part="max_batch", path=path_name(p, "float32", False, False), preset=p,
                                status="pending") for p in opts.max_batch_presets]
    for entry in entries(report):
        if entry["part"] not in opts.parts:
            entry.update(status="skipped", reason=f"not selected (--parts {','.join(opts.parts)})")
    steps = [(e, ("train_step", e["preset"], e["jit"]), check.train_step,
              e["preset"], e["precision"], e["jit"], e["fused_modconv"]) for e in report["train_step"]]
    first_tier = [task for task in steps if not (task[0]["jit"] or task[0]["fused_modconv"])]
    return [(report["environment"], ("environment", None, False), check.environment),
            (report["train_run"], ("train_run", None, False), check.train_run),
            *[(e, ("generator", e["preset"], e["jit"]), check.generator, e["preset"], e["precision"], e["jit"],
               e["fused_modconv"]) for e in report["generator"]],
            *first_tier,
            (report["mirrored"], ("train_step", opts.mirrored_preset, False), check.mirrored, opts.mirrored_preset),
            *[(e, ("train_step", e["preset"], False), check.max_batch, e["preset"]) for e in report["max_batch"]],
            *[task for task in steps if task not in first_tier]]


def main(argv):
    opts = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name, known in (("parts", PARTS), ("precisions", PRECISIONS), ("jit_modes", ("off", "on")),
                        ("modconv", ("nonfused", "fused"))):
        unknown = [value for value in opts[name].value if value not in known]
        if unknown:
            raise app.UsageError(f"--{name}: unknown {unknown[0]!r}; choose from {', '.join(known)}")
    if opts.dry_run:
        for name, value in DRY_RUN_DEFAULTS.items():
            if not opts[name].present:
                opts[name].value = value
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    if opts.logical_cpus > 1:
        tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                                   [tf.config.LogicalDeviceConfiguration()] * opts.logical_cpus)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # leaves memory to the train.py process
    check = Check(opts)
    tasks = plan(check)
    watchdog = threading.Timer(opts.budget_s + opts.grace_s, check.abort)
    watchdog.daemon = True
    watchdog.start()
    for entry, key, function, *args in tasks:
        check.run(entry, key, function, *args)
    watchdog.cancel()
    with check.lock:
        check.report.update(complete=True, elapsed_s=time.perf_counter() - check.start, summary=summary(check.report))
    print(check.save(), flush=True)


if __name__ == "__main__":
    define_flags(flags.FLAGS)
    app.run(main)
