"""Create a records folder from a folder of volumes (the original's `create_from_images3d`, extended)."""
import contextlib
import os
from pathlib import Path

import numpy as np

from tf3dstylegan.config import resolution_log2_for_shape
from tf3dstylegan.data.labels import LabelEncoding, write_labels
from tf3dstylegan.data.provenance import write_dataset_record
from tf3dstylegan.data.records import RecordWriter
from tf3dstylegan.data.table import covariate_values, match_files, read_table
from tf3dstylegan.data.volumes import (DEFAULT_MAX_VOXELS, NORMALIZATIONS, WARN_CLIPPED, DataError,
                                       describe_touching, iter_loaded_volumes, list_volume_files)


def check_outdir(outdir, indir=None):
    """DataError unless `outdir` can become a new records folder: not a file, not the input folder,
    without records or labels yet, and in a writable place."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise DataError(outdir, "exists and is not a folder")
    if indir is not None and outdir.resolve() == Path(indir).resolve():
        raise DataError(outdir, "is the input folder; write the records to another folder")
    if outdir.is_dir() and (any(outdir.glob("*.tfrecords")) or any(outdir.glob("*.labels"))):
        raise DataError(outdir, "already holds .tfrecords or .labels files; remove them or choose another folder")
    existing = outdir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(outdir, f"cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(outdir, f"cannot be written: {existing} is read-only")


def _check_options(voxel_size, img_shape, base_size, normalize, shards, workers, max_voxels):
    if len(base_size) != 3 or min(base_size) < 1:
        raise DataError("--base_size", f"expected three positive integers, got {tuple(base_size)}")
    if (voxel_size is None) != (img_shape is None):
        raise DataError("--voxel_size/--shape", "resampling needs both a voxel size and a shape")
    if voxel_size is not None and not (np.isfinite(voxel_size) and voxel_size > 0):
        raise DataError("--voxel_size", f"must be a positive number of millimetres, got {voxel_size}")
    if img_shape is not None:
        try:
            resolution_log2_for_shape(img_shape, base_size)
        except ValueError as err:
            raise DataError("--shape", str(err)) from None
    if normalize not in NORMALIZATIONS:
        raise DataError("--normalize", f"must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    for name, value in (("--shards", shards), ("--workers", workers), ("--max_voxels", max_voxels)):
        if value < 1:
            raise DataError(name, f"must be >= 1, got {value}")


def _covariates(labels, paths, label_columns, categorical):
    """(names, kinds, declared categories, values per path) of a covariate table, all checked."""
    if labels is None:
        if label_columns or categorical:
            raise DataError("--label_columns/--categorical", "need a covariate table: --labels participants.tsv")
        return None
    table = read_table(labels)
    return covariate_values(table, match_files(table, paths), label_columns, categorical)


def create_from_images3d(outdir, indir, *, base_size=(5, 6, 7), voxel_size=None, img_shape=None,
                         normalize="none", shards=1, workers=1, skip_bad=False, shuffle=True, lods=False,
                         progress=None, labels=None, label_columns=None, categorical=(),
                         max_voxels=DEFAULT_MAX_VOXELS) -> dict:
    """Convert a folder of .nii/.nii.gz/.npz volumes into a records folder (the original's
    `create_from_images3d`, plus resampling, normalisation, sharding and bad-file handling).

    shuffle uses the original's order (RandomState(123)); progress(done, total) is called per file.
    labels: a covariate table (tf3dstylegan.data.table: matching rule, kinds); its encoding and the
    labels in record order are written beside the records (tf3dstylegan.data.labels). Every option,
    the table and its match to the files are checked before any volume is read.
    Returns a summary dict; raises DataError (one line naming the file) on the first bad file
    unless skip_bad, in which case bad files are listed in summary["skipped"]. Nothing is left in
    outdir after an error."""
    img_shape = None if img_shape is None else tuple(int(s) for s in img_shape)
    _check_options(voxel_size, img_shape, base_size, normalize, shards, workers, max_voxels)
    table_path = None if labels is None else Path(labels).resolve()
    paths = [p for p in list_volume_files(indir) if p.resolve() != table_path]
    order = np.arange(len(paths))
    if shuffle:
        np.random.RandomState(123).shuffle(order)
    paths = [paths[i] for i in order]
    check_outdir(outdir, indir)
    covariates = _covariates(labels, paths, label_columns, categorical)
    shards = min(shards, len(paths))

    writer, skipped, shape, written, clipped, touching = None, [], None, [], [], []
    written_range, raw_range, num_clipped = [np.inf, -np.inf], [np.inf, -np.inf], 0
    loaded = iter_loaded_volumes(paths, workers, base_size=base_size, img_shape=img_shape,
                                 voxel_size=voxel_size, normalize=normalize, max_voxels=max_voxels)
    try:
        for done, (path, volume, report, problem) in enumerate(loaded, 1):
            if problem is None and shape is not None and volume.shape != shape:
                problem = (f"shape {volume.shape} differs from the first volume's {shape} "
                           "(resample with --voxel_size and --shape)")
            if problem is not None:
                if not skip_bad:
                    raise DataError(path, problem)
                skipped.append(str(DataError(path, problem)))
            else:
                if writer is None:
                    shape = volume.shape
                    writer = RecordWriter(outdir, resolution_log2_for_shape(shape, base_size), shards, lods)
                writer.write(volume)
                written.append(done - 1)
                written_range = [min(written_range[0], volume.min()), max(written_range[1], volume.max())]
                raw = report.raw_range
                raw_range = [min(raw_range[0], raw[0]), max(raw_range[1], raw[1])]
                num_clipped += normalize == "none" and (raw[0] < 0 or raw[1] > 1)
                if report.clipped > WARN_CLIPPED:
                    clipped.append((str(path), report.clipped))
                if report.touching:
                    touching.append(describe_touching(path, report.touching))
            if progress is not None:
                progress(done, len(paths))
        if writer is None:
            raise DataError(indir, f"no usable volumes ({len(skipped)} bad files skipped)")
        encoding = None
        if covariates is not None:
            names, kinds, declared, values = covariates
            encoding = LabelEncoding.fit(names, kinds, [values[i] for i in written], declared)
        files = _finish(writer, encoding, dict(normalize=normalize, base_size=base_size, img_shape=shape,
                                               voxel_size=voxel_size))
    except BaseException:
        if writer is not None:
            writer.abort()
        loaded.close()
        raise
    return {"outdir": str(outdir), "files": [str(f) for f in files], "num_volumes": writer.num_written,
            "img_shape": list(shape), "value_range": [float(v) for v in written_range],
            "input_range": [float(v) for v in raw_range], "num_clipped": int(num_clipped),
            "normalize": normalize, "skipped": skipped, "clipped": clipped, "touching": touching,
            "label_size": 0 if encoding is None else encoding.label_size,
            "labels": None if encoding is None else encoding.to_json()["covariates"]}


def _finish(writer, encoding, preprocessing):
    """Write the labels (if any) and dataset.json, then give the records their names; on failure remove them."""
    label_files = [] if encoding is None else write_labels(writer.outdir, encoding.samples, encoding)
    try:
        label_files.append(write_dataset_record(writer.outdir, **preprocessing))
        return writer.close()
    except BaseException:
        for path in label_files:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
