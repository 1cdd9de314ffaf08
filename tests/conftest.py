import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
LOCAL_FIXTURES = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def fixture_dir():
    """The shared TF1 fixtures (../shared/fixtures, or a copy under tests/data)."""
    for root in (FIXTURES, LOCAL_FIXTURES):
        if (root / "tf1-2mm-fd16" / "network.pkl").is_file():
            return root / "tf1-2mm-fd16"
    pytest.fail("TF1 fixtures not found in ../shared/fixtures or tests/data")
