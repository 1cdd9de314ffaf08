"""The house style, checked: ruff with the project's settings (pyproject's [tool.ruff]: 120 columns, E/F/W)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_passes_on_the_whole_repository():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True)
    assert "No module named ruff" not in proc.stderr, "ruff is part of the [test] extra: pip install -e '.[test]'"
    assert proc.returncode == 0, proc.stdout + proc.stderr
