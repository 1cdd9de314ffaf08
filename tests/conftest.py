import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

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
