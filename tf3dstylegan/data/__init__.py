"""Data: NIfTI/.npz volumes -> the original's TFRecords -> tf.data batches; demo dataset.

Names are imported lazily so that `tf3dstylegan.data.volumes` (used by worker processes) and
`tf3dstylegan.data.nifti` load without TensorFlow.
"""
import importlib

_EXPORTS = {
    "make_dataset": "pipeline",
    "dataset_info": "records",
    "DatasetInfo": "records",
    "read_volumes": "records",
    "create_from_images3d": "records",
    "RecordWriter": "records",
    "demo_dataset": "demo",
    "split_folder": "split",
    "DataError": "volumes",
    "load_volume": "volumes",
    "grid_affine": "nifti",
    "save_volume": "nifti",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
