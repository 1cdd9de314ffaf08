"""Running a snippet of Python on another Keras backend (a subprocess: the backend is chosen when Keras loads),
optionally with TensorFlow made impossible to import, and getting its arrays back."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))  # bench/ is scripts, not a package
from gpu_check import DRY_RUN_XLA_FLAGS  # noqa: E402  (tiny networks: XLA compiles without its costly passes)

WITHOUT_TENSORFLOW = '''
import importlib.abc, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: this test runs without TensorFlow)")
sys.meta_path.insert(0, _NoTensorFlow())
'''


def available(backend):
    """Whether a backend's framework is installed (TensorFlow and JAX are test dependencies; PyTorch may be absent)."""
    return importlib.util.find_spec({"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}[backend]) is not None


def requires(backend):
    """A mark that skips a test when `backend`'s framework is not installed (JAX: pip install -e '.[test,jax]')."""
    import pytest
    return pytest.mark.skipif(not available(backend), reason=f"{backend} is not installed")


def run_on(backend, code, out_dir, *args, without_tensorflow=True, env=None, timeout=900):
    """Run `code` with KERAS_BACKEND=backend (argv[1] is out_dir, then args); the snippet saves its arrays with
    np.savez(sys.argv[1] + '/out.npz', ...). Returns (the loaded arrays, stdout). AssertionError with its stderr
    when it fails. On JAX, XLA compiles as in gpu_check's dry run (the tests' networks are tiny: compiling is
    what takes their time)."""
    prelude = WITHOUT_TENSORFLOW if without_tensorflow else ""
    environment = dict(os.environ, KERAS_BACKEND=backend, **(env or {}))
    if backend == "jax":
        environment["XLA_FLAGS"] = " ".join([environment.get("XLA_FLAGS", ""), *DRY_RUN_XLA_FLAGS]).strip()
    proc = subprocess.run([sys.executable, "-c", prelude + code, str(out_dir), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=environment)
    assert proc.returncode == 0, proc.stderr[-4000:]
    path = Path(out_dir) / "out.npz"
    arrays = dict(np.load(path)) if path.is_file() else {}
    return arrays, proc.stdout


def as_json(text):
    """The JSON object a snippet printed on its last line starting with RESULT."""
    line = [line for line in text.splitlines() if line.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])
