"""Every command example in README.md runs as written, so that none can drift from the code.

The commands are read from the README itself (code-block lines and inline code spans that start a command), in
README order, and each must have an entry in EXAMPLES, which says how it is checked:
- "run": run in one shared workspace, in-process through `tf3dstylegan.cli.run` as the scripts do, with the
  README's stand-ins for the user's own files (OUTDIR, scan tables, ...) made small, and appended flags that only
  shorten it (later flags win), e.g. `--kimg 0.016` for a 10 kimg demo run;
- "refused": run it and expect the given one-line refusal (e.g. 4 GPUs on a machine without GPUs);
- "flags": a benchmark script or a long job: the script exists and accepts every flag the README gives it;
- "ci": the README's set-up and test commands, which `.ci/run` runs literally in a new virtual environment;
- "pattern": the form of a command, not a command (`python -m tf3dstylegan NAME`).
The README's main job (`python train.py`, what its first command runs) comes first, as for a new user: its run
folder is `runs/00000-demo`.
A README command without an entry, or an entry whose command left the README, fails the test. The Python block
of the README runs as a script.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf3dstylegan import cli

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SCRIPTS = {"train.py": "train", "generate.py": "generate", "project.py": "project", "dataset_tool.py": "dataset"}
MAIN_JOB = "python train.py"
COMMAND_START = re.compile(r"^(python |tf3dstylegan(-\w+)? |pip |(train|generate|project|dataset_tool)\.py )")

EXAMPLES = {
    'pip install -e ".[test]" && python train.py': ("ci", None),
    "python -m pytest -q": ("ci", None),
    'python -m pytest -q -m "not slow"': ("ci", None),
    "pip install tensorboard": ("ci", None),
    "python -m tf3dstylegan NAME": ("pattern", None),
    # An install without TensorFlow: what tests/test_backends.py runs under (TensorFlow's import blocked).
    "pip install --no-deps -e . && pip install keras jax numpy scipy nibabel absl-py google-crc32c nilearn SimpleITK":
        ("pattern", None),
    # README order: the demo run first, as a new user does; later examples use its run folder.
    "python train.py": ("run", ["--kimg", "0.016"]),
    "python -m tf3dstylegan convert tests/data/tf1-2mm-fd16/network.pkl out/converted/": ("run", []),
    "python dataset_tool.py create-from-images3d OUTDIR INDIR --base_size 5,6,7": ("run", []),
    "python dataset_tool.py create-from-images3d OUTDIR INDIR --voxel_size 2 --shape 80,96,112 "
    "--normalize percentile --workers 4 --skip_bad --labels participants.tsv": ("run", []),
    # The form of prepare's command line (its runs are tests/test_prepare.py's: they need the deepbet weights).
    "python dataset_tool.py prepare OUTDIR INDIR [--voxel_size 2|1] [--shape X,Y,Z] [--workers 2] [--skip_bad] "
    "[--records [--labels participants.tsv]] [--no_bias_correction] [--skull_strip deepbet|none] "
    "[--register affine|none]": ("pattern", None),
    "dataset_tool.py prepare": ("pattern", None),
    "python dataset_tool.py split INDIR --valid_fraction 0.1 --seed 0": ("run", []),
    "python dataset_tool.py info OUTDIR --verify": ("run", []),
    "python dataset_tool.py demo [--voxel_size 1] [--labels]": ("run", []),
    "python dataset_tool.py demo --labels": ("run", []),
    "python bench/bench_input_pipeline.py --pipeline numpy --step_time 0.5": ("flags", None),
    "python train.py --cfg 2mm-fd16 --kimg 1": ("run", ["--kimg", "0.004"]),
    "python train.py --cfg 2mm-fd96 --data /path/to/records --gpus 4": ("refused", "--gpus 4 asked for"),
    "python train.py --labels": ("run", ["--kimg", "0.008"]),
    "python train.py --labels --outdir runs/conditional": ("run", ["--kimg", "0.016"]),
    "python generate.py --network runs/00000-demo --seeds 0-9 --trunc 0.7 --noise_mode const --outdir out/seeds":
        ("run", []),
    "python generate.py --network out/converted/G_ema.keras --seeds 0-999 --slab_size 16 --outdir out/slabs":
        ("run", ["--seeds", "0-1"]),
    "python generate.py --network runs/00000-demo --row_seeds 1,2 --col_seeds 3-5 --col_styles 3-5 --outdir out/mix":
        ("run", []),
    "python generate.py --network tests/data/tf1-2mm-fd16/network.pkl --interp 0,1 --frames 10 --space z "
    "--outdir out/interp": ("run", ["--frames", "3"]),
    "python project.py --network runs/00000-demo --target out/seeds/seed0003.nii.gz --outdir out/proj --steps 200":
        ("run", ["--steps", "20"]),
    "python project.py --network runs/conditional/00000-demo --target out/seeds/seed0003.nii.gz "
    "--cond age=60,sex=F --space w --outdir out/proj_cond --steps 200": ("run", ["--steps", "20"]),
    "python generate.py --network runs/conditional/00000-demo --projected out/proj_cond/projected_w.npz "
    "--sweep age=50:90:5 --cond sex=F --outdir out/cf_sweep": ("run", []),
    "python generate.py --network runs/conditional/00000-demo --projected out/proj_cond/projected_w.npz --cond age=80 "
    "--outdir out/cf_one": ("run", []),
    "python generate.py --network runs/conditional/00000-demo --projected out/proj_cond/projected_w.npz --cond age=80 "
    "--scan out/proj_cond/target.nii.gz --outdir out/cf_scan": ("run", []),
    "python bench/bench_counterfactual.py --network RUN --subjects 16 --steps 300": ("flags", None),
    "python train.py --labels --batch 8 --kimg 20 --snap 10 --aug fixed --aug_p 0.3": ("flags", None),
    "generate.py --projected P --scan P/target.nii.gz": ("pattern", None),
    "python -m tf3dstylegan metrics --network runs/00000-demo --protocol paper --num 100 --out out/metrics.json":
        ("run", ["--num", "8", "--intervals", "2"]),
    "python -m tf3dstylegan metrics --network runs/00000-demo --protocol medicalnet "
    "--medicalnet_weights resnet_50_23dataset.pth --out out/medicalnet.json":
        ("run", ["--num", "8", "--intervals", "2"]),
    "python bench/bench_ada.py --what train": ("flags", None),
    "python bench/bench_ada.py --what train --seed S": ("flags", None),
    "python bench/bench_ada.py --what repeat --network RUN/network-snapshot-000010.000.keras": ("flags", None),
    "python bench/bench_conditional.py": ("flags", None),
    "python train.py --labels --batch 8 --kimg 20 --snap 10": ("run", ["--kimg", "0.032"]),
    "python -m tf3dstylegan metrics --network SNAPSHOT --effect age --num 320": ("run", ["--num", "4"]),
    "python bench/bench_networks.py": ("flags", None),
    "python bench/bench_antialias.py": ("flags", None),
    "python generate.py --network runs/conditional/00000-demo --seeds 0-3 --sweep age=50:90:5 --cond sex=F "
    "--outdir out/sweep": ("run", []),
}


def readme_commands(text):
    """The command lines of a README, in order: code-block lines and inline code spans that start a command
    (a line continued with a backslash is joined; a trailing `# comment` is dropped)."""
    found, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside or line.startswith("    "):
            stripped = pending + line.strip()
            if stripped.endswith("\\"):
                pending = stripped[:-1]
                continue
            pending = ""
            command = re.sub(r"\s+#.*$", "", stripped).strip()
            if COMMAND_START.match(command):
                found.append(command)
        else:
            found += [span for span in re.findall(r"`([^`]+)`", line) if COMMAND_START.match(span)]
    return list(dict.fromkeys(found))


def test_every_readme_command_has_a_check():
    commands = readme_commands(README.read_text())
    assert set(commands) - set(EXAMPLES) == set(), "README commands without an entry in EXAMPLES"
    assert set(EXAMPLES) - set(commands) == set(), "EXAMPLES entries whose command is no longer in the README"


def _substitute(words, workspace, counter):
    """The README's stand-ins made concrete in the workspace ([optional] parts dropped). OUTDIR is a new records
    folder for a command that creates one, else the first one created."""
    out = []
    for word in words:
        if word.startswith("[") or word.endswith("]"):
            continue
        if word == "OUTDIR":
            word = f"out/records{counter}" if "create-from-images3d" in words else _first_records(workspace)
        elif word == "/path/to/records":
            from tf3dstylegan.data import demo_dataset
            word = str(demo_dataset(voxel_size=2.0))
        elif word == "SNAPSHOT":
            word = str(_newest_conditional_snapshot(workspace))
        out.append("scans" if word == "INDIR" else word)
    return out


def _first_records(workspace):
    made = sorted((workspace / "out").glob("records*"), key=lambda p: int(p.name[len("records"):]))
    return str(made[0]) if made else "no-records-yet"


def _newest_conditional_snapshot(workspace):
    snapshots = sorted((workspace / "runs").glob("*/network-snapshot-*.keras"))
    conditional = [s for s in snapshots if (s.parent / "training_options.json").read_text().find('"labels": true') > 0]
    return conditional[-1] if conditional else "no-conditional-snapshot"


def _stand_ins(workspace):
    """Small versions of the files a user brings: scans (20x24x28, one subject per file), their covariate table,
    and MedicalNet weights (the suite's tiny random-weight copy)."""
    from tf3dstylegan.data.nifti import save_volume
    scans = workspace / "scans"
    scans.mkdir()
    rng = np.random.default_rng(0)
    rows = ["participant_id\tage\tsex"]
    for i in range(6):
        save_volume(scans / f"sub-{i:02d}_T1w.nii.gz", rng.uniform(0, 1, (20, 24, 28)).astype(np.float32), 8.0)
        rows.append(f"sub-{i:02d}\t{50 + 5 * i}\t{'FM'[i % 2]}")
    (workspace / "participants.tsv").write_text("\n".join(rows) + "\n")
    (workspace / "resnet_50_23dataset.pth").write_bytes((REPO / "tests" / "data" / "medicalnet_tiny.pth").read_bytes())


def _run_in_process(words):
    """Exit code and stderr of a README command run as its script would run it."""
    if words[0] == "python" and words[1] == "-m":
        argv, runner = ["python -m tf3dstylegan", *words[3:]], cli.main
    else:
        script = words[1] if words[0] == "python" else words[0]
        name = SCRIPTS[Path(script).name]
        module = cli.COMMANDS[name][0]
        argv = [Path(script).name, *(words[2:] if words[0] == "python" else words[1:])]
        if name == "dataset":
            from tf3dstylegan.commands.dataset import normalize_argv
            argv = normalize_argv(argv)

        def runner(args):
            return cli.run(module, args)
    try:
        return runner(argv) or 0
    except SystemExit as stop:
        return stop.code


def _script_accepts(words):
    """Whether a bench script exists and its --help lists every flag the command gives it."""
    script = REPO / words[1]
    if not script.is_file():
        return f"{words[1]}: no such script"
    if words[1] == "-m":
        return None
    shown = subprocess.run([sys.executable, str(script), "--helpfull"], capture_output=True, text=True, cwd=REPO,
                           timeout=300).stdout
    missing = [w for w in words[2:] if w.startswith("--") and f"--{w[2:].split('=')[0]}" not in shown]
    return f"{words[1]} does not accept {missing}" if missing else None


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").symlink_to(REPO / "tests")  # the examples that use the suite's fixture network
    _stand_ins(tmp_path)
    failures = []
    commands = readme_commands(README.read_text())
    commands.sort(key=lambda command: command != MAIN_JOB)
    for counter, command in enumerate(commands):
        kind, detail = EXAMPLES[command]
        words = shlex.split(command)
        if kind == "flags":
            problem = _script_accepts(words)
            if problem:
                failures.append(f"{command}: {problem}")
            continue
        if kind in ("ci", "pattern"):
            continue
        words = _substitute(words, tmp_path, counter)
        code = _run_in_process(words + (detail if kind == "run" else []))
        err = capfd.readouterr().err
        if kind == "run" and code != 0:
            failures.append(f"{command}: exit {code}: {err.strip().splitlines()[-1:] if err.strip() else ''}")
        if kind == "refused" and (code == 0 or detail not in err):
            failures.append(f"{command}: expected the refusal {detail!r}, got exit {code}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has a Python example"
    (tmp_path / "tests").symlink_to(REPO / "tests")
    for block in blocks:
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
