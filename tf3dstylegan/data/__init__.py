"""Data: NIfTI/.npz volumes (+ covariate tables) -> the original's TFRecords and labels -> tf.data batches;
demo datasets.

Names are imported lazily so that `tf3dstylegan.data.volumes` (used by worker processes),
`tf3dstylegan.data.nifti`, `labels`, `table` and `anatomy` load without TensorFlow.
"""
import importlib

_EXPORTS = {
    "make_dataset": "pipeline",
    "dataset_info": "records",
    "DatasetInfo": "records",
    "read_volumes": "records",
    "create_from_images3d": "create",
    "RecordWriter": "records",
    "demo_dataset": "demo",
    "ventricle_volume": "anatomy",
    "LabelEncoding": "labels",
    "read_labels": "labels",
    "write_labels": "labels",
    "verify_records": "verify",
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
