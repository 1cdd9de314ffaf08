"""bench/gpu_check.py's constants, tolerance checks, batch search and JSON report helpers (no framework at import)."""
import contextlib
import json
import math
from pathlib import Path

import numpy as np

PARTS = ("environment", "train_run", "generator", "train_step", "mirrored", "max_batch")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
JIT_MODES = ("off", "on")
# What each backend runs unless told otherwise: JAX compiles everything (its step is always jitted) and trains in
# float32 and bfloat16 only (float16 needs loss scaling, which its step does not do: backend/jax/trainer.py).
BACKEND_DEFAULTS = {"tensorflow": dict(precisions=list(PRECISIONS), jit_modes=list(JIT_MODES)),
                    "jax": dict(precisions=["float32", "mixed_bfloat16"], jit_modes=["on"])}
OUT_OF_MEMORY_TEXTS = ("out of memory", "Out of memory", "OOM", "RESOURCE_EXHAUSTED", "Dst tensor is not initialized")
# Dry run: the smallest networks, on 5x6x7 volumes (the demo dataset at 32 mm, for train_run).
TINY = dict(resolution_log2=2, voxel_size=32.0, fmap_min=4, fmap_max=4, latent_size=8, dlatent_size=8,
            mapping_fmaps=8, mapping_layers=1)
DRY_RUN_DEFAULTS = dict(batch=2, repeats=1, max_batch_limit=8, train_kimg=0.004, train_batch=2,
                        train_tick_kimg=0.002)
# (rtol, atol, atol as a fraction of max |reference|?, the CPU test that uses this tolerance).
TOLERANCES = {
    "float32": (1e-7, 1e-5, False, "tests/test_networks.py::test_fused_modconv_generator_matches_plain"),
    "mixed_float16": (0.005, 0.005, True, "tests/test_ops.py::test_fused_bias_lrelu_in_half_precision_matches_float32"),
    "mixed_bfloat16": (0.03, 0.03, True, "tests/test_ops.py::test_fused_bias_lrelu_in_half_precision_matches_float32"),
}
STEP0_COMPARED = ("loss/G", "D/real")  # computed from the shared initial weights, before any update


class Skipped(Exception):
    """A part that cannot run here (recorded as skipped with this reason)."""


class OutOfTime(Exception):
    """The budget cannot fit the next max_batch trial."""


def one_line(err):
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {text}"[:400]


def jsonable(value):
    """The report with NaN/Inf as null (strict JSON) and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def agreement(values, reference, precision):
    """Max/mean |values - reference|; within_tolerance: every element passes the CPU tests' check for precision."""
    rtol, atol, scaled, source = TOLERANCES[precision]
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    diff = np.abs(values - reference)
    reference_max = float(np.abs(reference).max())
    atol = atol * reference_max if scaled else atol
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "reference_max_abs": reference_max,
            "within_tolerance": bool(np.all(diff <= atol + rtol * np.abs(reference))),
            "tolerance": {"rtol": rtol, "atol": atol, "from": source}}


def search_largest_batch(fits, start, limit, multiple):
    """(largest batch that fits, smallest that does not or None, what bounded the search).

    Doubles from `start` up to `limit`, then bisects on multiples of `multiple` to within a quarter; halves
    from `start` when it does not fit. fits(batch) -> bool."""
    lo, hi, batch = None, None, start
    while batch <= limit and hi is None:
        lo, hi, batch = (batch, None, batch * 2) if fits(batch) else (lo, batch, batch)
    while lo is None and hi is not None and batch > 1:
        batch //= 2
        lo, hi = (batch, hi) if fits(batch) else (None, batch)
    while lo and hi and hi - lo > max(multiple, lo // 4):
        mid = (lo + hi) // 2 // multiple * multiple
        if mid <= lo:
            break
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, hi, "out of memory" if hi else "--max_batch_limit"


def tick_summary(records):
    """sec/kimg of a run's stats.jsonl records: the median over the ticks after the first (which traces)."""
    steady = sorted(r["sec_per_kimg"] for r in records[1:])
    return {"ticks": len(records), "kimg": records[-1]["kimg"], "first_tick_sec_per_kimg": records[0]["sec_per_kimg"],
            "sec_per_kimg_per_tick": [r["sec_per_kimg"] for r in records[1:]],
            "sec_per_kimg": steady[len(steady) // 2] if steady else None, "memory_mb": records[-1].get("memory_mb")}


def json_lines(path):
    """The JSON records of a .jsonl file, leaving out a line cut short by a killed writer."""
    records = []
    for line in Path(path).read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return [record for record in records if isinstance(record, dict)]


def mentions_out_of_memory(err):
    """Whether an exception's text is an allocator's out-of-memory message (TensorFlow's or XLA's)."""
    return any(text in str(err) for text in OUT_OF_MEMORY_TEXTS)


@contextlib.contextmanager
def dtype_policy(precision):
    """Keras layers built inside compute in `precision` (float32 variables); float32 again afterwards."""
    import keras
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def path_name(preset, precision, jit, fused):
    return f"{preset}/{precision}/{'jit' if jit else 'nojit'}/{'fused' if fused else 'nonfused'}"


def entries(report):
    for part in PARTS:
        yield from report[part] if isinstance(report[part], list) else [report[part]]


def summary(report):
    counts = {status: sum(e["status"] == status for e in entries(report)) for status in ("ok", "failed", "skipped")}
    return dict(counts, failed_paths=[f"{e['part']} {e.get('path', '')}".strip() for e in entries(report)
                                      if e["status"] == "failed"])

