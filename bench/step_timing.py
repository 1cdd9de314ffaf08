"""Training steps of several variants timed interleaved in one process, so that load on the machine hits all alike.

Used by bench_ada.py and bench_conditional.py: `time_steps({name: (train_step, batch)}, repeats)` runs one
untimed step per variant (tracing), then `repeats` rounds of one step each, at steps 1..15 (no lazy
regularisation); `step_records(...)` gives one JSON-ready record per variant with medians of wall time and of
this process's CPU time (less sensitive than wall time to other jobs), relative to the variant named "plain".
"""
import time

import numpy as np


def time_steps(variants, repeats):
    """{name: (TrainStep, batch)} -> (wall, cpu): {name: [seconds per timed step]}."""
    wall, cpu = ({name: [] for name in variants} for _ in range(2))
    for repeat in range(repeats + 1):
        for name, (train_step, batch) in variants.items():
            step = 1 + repeat % 15  # no lazy regularisation at steps 1..15
            start, start_cpu = time.perf_counter(), time.process_time()
            float(train_step(batch, step)["loss/D"])  # waits for the step
            if repeat:  # the first call traces
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def step_records(wall, cpu, **fields):
    """One record per variant: `fields`, its median seconds per step and both relative to "plain"."""
    return [{"what": "step", "variant": name, **fields, "seconds_per_step": float(np.median(wall[name])),
             "cpu_seconds_per_step": float(np.median(cpu[name])), "all_seconds": [round(v, 3) for v in wall[name]],
             "relative_to_plain": float(np.median(wall[name]) / np.median(wall["plain"])),
             "cpu_relative_to_plain": float(np.median(cpu[name]) / np.median(cpu["plain"]))}
            for name in wall]
