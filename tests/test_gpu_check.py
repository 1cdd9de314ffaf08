"""bench/gpu_check.py: its search and summaries, and its CPU dry run (so that the GPU check cannot rot)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from absl import flags

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.py"
STATUSES = {"ok", "failed", "skipped"}

sys.path.insert(0, str(SCRIPT.parent))  # bench/ is scripts, not a package: its modules import each other by name
import gpu_check  # noqa: E402
import gpu_check_report as helpers  # noqa: E402


def parsed_flags(*args):
    fv = flags.FlagValues()
    gpu_check.define_flags(fv)
    fv(["gpu_check.py", *args])
    return fv


def run_script(*args, cache, timeout=900, **env_vars):
    env = dict(os.environ, TF3DSTYLEGAN_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="2", **env_vars)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("capacity, start, limit, expected", [
    (20, 4, 256, (20, 24, "out of memory")),     # 4, 8, 16 fit, 32 not; bisect 24 (no), 20 (yes)
    (3, 4, 256, (2, 4, "out of memory")),        # the start does not fit: halve
    (10 ** 6, 4, 16, (16, None, "--max_batch_limit")),
    (0, 4, 256, (None, 1, "out of memory")),     # nothing fits
])
def test_search_largest_batch(capacity, start, limit, expected):
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= capacity
    assert helpers.search_largest_batch(fits, start, limit, multiple=4) == expected
    assert len(tried) == len(set(tried))  # no batch tried twice


def test_agreement_uses_the_cpu_tests_tolerances():
    reference = [1.0, -2.0, 0.5]
    close = helpers.agreement([1.02, -2.0, 0.5], reference, "mixed_bfloat16")  # |diff| <= 0.03 * (2 + 1)
    assert close["within_tolerance"] and close["max_abs_diff"] == pytest.approx(0.02)
    assert close["tolerance"]["atol"] == pytest.approx(0.03 * 2.0)  # a fraction of max |reference|
    assert not helpers.agreement([1.02, -2.0, 0.5], reference, "mixed_float16")["within_tolerance"]
    assert not helpers.agreement([1.0 + 2e-5, -2.0, 0.5], reference, "float32")["within_tolerance"]
    broken = helpers.agreement([float("nan"), -2.0, 0.5], reference, "mixed_bfloat16")
    assert not broken["within_tolerance"]
    assert helpers.jsonable(broken)["max_abs_diff"] is None  # strict JSON: no NaN


def test_tick_summary_leaves_out_the_first_tick():
    records = [{"kimg": k, "sec_per_kimg": s, "memory_mb": 10.0} for k, s in ((1, 900.0), (2, 30.0), (3, 10.0),
                                                                              (4, 20.0))]
    summary = helpers.tick_summary(records)
    assert summary["sec_per_kimg"] == 20.0 and summary["first_tick_sec_per_kimg"] == 900.0
    assert summary["ticks"] == 4 and summary["kimg"] == 4
    assert helpers.tick_summary(records[:1])["sec_per_kimg"] is None


def test_json_lines_leaves_out_a_cut_line(tmp_path):
    path = tmp_path / "stats.jsonl"
    path.write_text('{"tick": 0, "sec_per_kimg": 5.0}\n{"tick": 1, "sec_per_kimg": 4.0}\n{"tick": 2, "sec_per_')
    assert [r["tick"] for r in helpers.json_lines(path)] == [0, 1]


def test_plan_runs_the_most_telling_parts_first():
    opts = parsed_flags("--presets=2mm-fd16,1mm-fd16", "--precisions=float32,mixed_bfloat16",
                        "--parts=generator,train_step,max_batch")
    check = SimpleNamespace(opts=opts, report={}, baseline_jit=False, **{name: name for name in helpers.PARTS})
    order = [f"{entry['part']} {entry.get('path', '')}".strip() for entry, *_ in gpu_check.plan(check)]
    assert order[:2] == ["environment", "train_run 2mm-fd96"]
    generator = [o for o in order if o.startswith("generator")]
    assert len(generator) == 2 * 2 * 2 * 2 and generator[:4] == [
        "generator 2mm-fd16/float32/nojit/nonfused", "generator 1mm-fd16/float32/nojit/nonfused",
        "generator 2mm-fd16/mixed_bfloat16/nojit/nonfused", "generator 1mm-fd16/mixed_bfloat16/nojit/nonfused"]
    steps = [i for i, o in enumerate(order) if o.startswith("train_step")]
    mirrored, max_batch = order.index("mirrored 2mm-fd96/float32/nojit/nonfused"), order.index(
        "max_batch 2mm-fd96/float32/nojit/nonfused")
    assert max(i for i, o in enumerate(order) if o.startswith("generator")) < steps[0]
    assert steps[3] < mirrored < max_batch < steps[4]  # plain steps, mirrored, max batch, then jit/fused steps
    assert all("nojit/nonfused" in order[i] for i in steps[:4]) and len(steps) == 16
    skipped = [e for e in helpers.entries(check.report) if e["status"] == "skipped"]
    assert {e["part"] for e in skipped} == {"environment", "train_run", "mirrored"}
    assert all(e["reason"].startswith("not selected") for e in skipped)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run with an unknown preset beside a real one (its paths must fail, the others run)."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc = run_script("--dry_run", "--logical_cpus=2", "--presets=2mm-fd16,no-such-preset", "--nofull_step_matrix",
                      "--mirrored_preset=2mm-fd16", "--max_batch_presets=2mm-fd16", "--max_batch_limit=2",
                      f"--out={tmp / 'report.json'}", cache=tmp / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report == json.loads((tmp / "report.json").read_text())
    return report


def finite(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


@pytest.mark.slow
def test_dry_run_names_every_path_with_its_result(dry_run):
    assert dry_run["complete"] and dry_run["dry_run"]
    entries = list(helpers.entries(dry_run))
    for entry in entries:
        assert entry["status"] in STATUSES, entry
        assert entry["status"] == "ok" or entry["reason"], entry
    assert {e["path"] for e in dry_run["generator"]} == {
        helpers.path_name(preset, precision, jit, fused) for preset in ("2mm-fd16", "no-such-preset")
        for precision in helpers.PRECISIONS for jit in (False, True) for fused in (False, True)}
    assert {e["path"] for e in dry_run["train_step"]} == {
        helpers.path_name(preset, precision, False, False) for preset in ("2mm-fd16", "no-such-preset")
        for precision in helpers.PRECISIONS}
    counts = dry_run["summary"]
    assert counts["ok"] + counts["failed"] + counts["skipped"] == len(entries)


@pytest.mark.slow
def test_dry_run_agreement_with_float32(dry_run):
    for entry in dry_run["generator"]:
        if entry["preset"] == "2mm-fd16":
            assert entry["status"] == "ok", entry
            found = entry["agreement_vs_strict_float32"]
            assert finite(found["max_abs_diff"], found["mean_abs_diff"], entry["seconds_per_call"]), entry
            assert found["within_tolerance"], entry  # mixed precision within the CPU tests' tolerances
    steps = {e["precision"]: e for e in dry_run["train_step"] if e["preset"] == "2mm-fd16"}
    assert steps["float32"]["status"] == "ok" and steps["float32"]["step0_reference"]
    for precision in ("mixed_float16", "mixed_bfloat16"):
        found = steps[precision]["step0_agreement_vs_float32"]
        assert finite(found["max_abs_diff"], steps[precision]["sec_per_kimg"]) and found["within_tolerance"]


@pytest.mark.slow
def test_dry_run_records_a_failure_and_runs_the_rest(dry_run):
    bad = [e for part in ("generator", "train_step") for e in dry_run[part] if e["preset"] == "no-such-preset"]
    assert bad and all(e["status"] == "failed" and "no-such-preset" in e["reason"] for e in bad)
    assert len(dry_run["summary"]["failed_paths"]) == len(bad)
    assert dry_run["environment"]["status"] == "ok" and dry_run["environment"]["tensorflow"]
    train_run = dry_run["train_run"]
    assert train_run["status"] == "ok" and train_run["ticks"] == 2 and finite(train_run["sec_per_kimg"]), train_run
    assert "--override" in train_run["command"] and "TMP" in train_run["command"]
    mirrored = dry_run["mirrored"]
    assert mirrored["status"] == "ok" and len(mirrored["devices"]) == 2 and mirrored["batch"] == 4, mirrored
    assert finite(mirrored["step_s"], mirrored["scaling_efficiency"])
    (max_batch,) = dry_run["max_batch"]
    assert max_batch["status"] == "ok" and max_batch["largest_fitting_batch"] == 2
    assert max_batch["bounded_by"] == "--max_batch_limit" and max_batch["trials"][0]["fits"]


@pytest.mark.slow
def test_budget_skips_and_the_hard_deadline_writes_the_report(tmp_path):
    skipped = run_script("--dry_run", "--budget_s=0", "--grace_s=600", cache=tmp_path)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    report = json.loads(skipped.stdout)
    assert all(e["status"] == "skipped" and e["reason"].startswith("time budget")
               for e in helpers.entries(report))
    # 51 full-size 1 mm generator passes on the CPU outlast a 2 s deadline.
    late = run_script("--parts=generator", "--presets=1mm-fd16", "--precisions=float32", "--jit_modes=off",
                      "--modconv=nonfused", "--batch=1", "--repeats=50", "--budget_s=1", "--grace_s=1", cache=tmp_path)
    assert late.returncode == 3, late.stderr[-3000:]
    report = json.loads(late.stdout)
    assert not report["complete"] and report["generator"][0]["status"] == "failed"
    assert "hard deadline" in report["generator"][0]["reason"]


@pytest.mark.slow
def test_dry_run_on_jax_runs_every_part_it_plans(tmp_path):
    """The JAX check (what a GPU machine with JAX and no TensorFlow runs) on the CPU: every planned entry ok."""
    pytest.importorskip("jax")
    proc = run_script("--dry_run", "--logical_cpus=2", "--presets=2mm-fd16", "--nofull_step_matrix",
                      "--mirrored_preset=2mm-fd16", "--max_batch_presets=2mm-fd16", "--max_batch_limit=2",
                      f"--out={tmp_path / 'report.json'}", cache=tmp_path / "cache", KERAS_BACKEND="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["complete"] and report["summary"]["failed"] == 0 and report["summary"]["ok"] > 0, report["summary"]
    assert {e["part"] for e in helpers.entries(report) if e["status"] == "ok"} >= {"generator", "train_step"}
