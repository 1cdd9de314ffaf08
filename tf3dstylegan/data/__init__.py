"""Data: NIfTI/.npz volumes (+ covariate tables) -> the original's TFRecords and labels -> batches (tf.data's
make_dataset, or NumPy's batches.make_batches); demo datasets.

Only `pipeline` (make_dataset) needs TensorFlow: records, verification, the demo data and make_batches read and
write TFRecords without it. Names are imported lazily, so that worker processes load only what they use.
"""
import importlib

_EXPORTS = {
    "make_dataset": "pipeline",
    "make_batches": "batches",
    "dataset_info": "records",
    "DatasetInfo": "records",
    "read_volumes": "records",
    "create_from_images3d": "create",
    "RecordWriter": "records",
    "demo_dataset": "demo",
    "demo_subject": "demo",
    "ventricle_volume": "anatomy",
    "partial_ventricle_volume": "anatomy",
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
