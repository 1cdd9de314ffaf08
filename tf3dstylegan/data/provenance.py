"""What a records folder's volumes went through: `dataset.json` beside the records (written by the dataset
tool) records the intensity normalisation, the grid and the base size, so that training can save the
normalisation with the network and `project` can treat a raw scan the same way.

Folders without the file (made before it existed, or by the original code) have an unknown normalisation
(""); the built-in demo data (`demo.json`) stores its volumes as they are ("none").
"""
import json
from pathlib import Path

from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.io import write_json_atomic

DATASET_FILE = "dataset.json"
DEMO_FILE = "demo.json"
FORMAT = "tf3dstylegan-dataset-v1"


def write_dataset_record(records_dir, *, normalize, base_size, img_shape, voxel_size=None) -> Path:
    """Write `<records_dir>/dataset.json` atomically; returns its path (DataError naming it when it cannot)."""
    path = Path(records_dir) / DATASET_FILE
    try:
        return write_json_atomic(path, {
            "format": FORMAT, "normalize": normalize, "base_size": [int(b) for b in base_size],
            "img_shape": [int(s) for s in img_shape], "voxel_size": None if voxel_size is None else float(voxel_size)})
    except OSError as err:
        raise DataError(path, f"cannot write: {err.strerror or err}") from None


def recorded_normalization(records_dir) -> str:
    """The --normalize a records folder was made with: 'none', 'minmax', 'percentile', or '' when unknown (no
    readable dataset.json; not a folder)."""
    folder = Path(records_dir)
    try:
        record = json.loads((folder / DATASET_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "none" if (folder / DEMO_FILE).is_file() else ""
    value = record.get("normalize") if isinstance(record, dict) and record.get("format") == FORMAT else None
    return value if value in ("none", "minmax", "percentile") else ""
