"""`prepare`: a folder of raw T1 scans or FreeSurfer subjects -> brain-only, bias-corrected volumes on the paper's
grid in MNI152 space (tf3dstylegan.preprocess), with quality control, in parallel and resumable.

OUTDIR gets `<stem>.nii.gz` per subject (affine: voxels -> MNI152 mm), `qc/<stem>.png` (middle planes with the
template's outline), `qc/<stem>.json` (the QC row, written last: a rerun skips subjects that have one),
`qc/prepare_report.tsv`, `qc/prepare.json` (the options; a rerun with others is refused), `excluded/` (flagged
subjects with skip_bad) and with records=True `records/` (create_from_images3d of OUTDIR).
"""
import concurrent.futures
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

from tf3dstylegan.data.demo import demo_shape
from tf3dstylegan.data.volumes import DEFAULT_MAX_VOXELS, DataError
from tf3dstylegan.io import write_json_atomic
from tf3dstylegan.preprocess import qc
from tf3dstylegan.preprocess.scans import check_header, list_subjects
from tf3dstylegan.preprocess.subject import REGISTRATIONS, SKULL_STRIPS, PrepareOptions, output_paths, \
    prepare_subject

_WORKER = {}  # per process: the deepbet stripper, built once


def deepbet_weight_files(cache=None):
    """(bbox_model, model) `.npz` paths of deepbet's two networks, fetched into the cache when missing."""
    from tf3dstylegan.metrics import weights  # pylint: disable=import-outside-toplevel
    return str(weights.ensure_weights("deepbet_bbox", cache)), str(weights.ensure_weights("deepbet", cache))


def _init_worker(weight_files, threads):
    """Limit each worker's threads to its share of the cores, before TensorFlow or ITK start."""
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    _WORKER["weight_files"] = weight_files
    if weight_files:  # TensorFlow's start-up notices ignore the log level: stderr is closed while it loads
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import keras  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
            keras.ops.zeros(1)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _stripper():
    if "stripper" not in _WORKER and _WORKER.get("weight_files"):
        from tf3dstylegan.preprocess.skullstrip import DeepbetStripper  # pylint: disable=import-outside-toplevel
        bbox, model = (dict(np.load(path)) for path in _WORKER["weight_files"])
        _WORKER["stripper"] = DeepbetStripper.from_weights(bbox, model)
    return _WORKER.get("stripper")


def _run_one(subject, outdir, options, max_voxels):
    """(row, None) or (None, problem): workers never raise for a bad input."""
    try:
        return prepare_subject(subject, outdir, options, _stripper(), max_voxels), None
    except DataError as err:
        return None, str(err)
    except Exception as err:  # pylint: disable=broad-except; any reader or library failure is a bad input
        return None, str(DataError(subject.path, f"failed ({type(err).__name__}: {err})"))


def check_options(outdir, indir, options, workers):
    if options.skull_strip not in SKULL_STRIPS:
        raise DataError("--skull_strip", f"must be one of {', '.join(SKULL_STRIPS)}, got {options.skull_strip!r}")
    if options.register not in REGISTRATIONS:
        raise DataError("--register", f"must be one of {', '.join(REGISTRATIONS)}, got {options.register!r}")
    try:
        demo_shape(options.voxel_size)
    except ValueError as err:
        raise DataError("--voxel_size", err) from None
    if options.img_shape is not None and (len(options.img_shape) != 3 or min(options.img_shape) < 1):
        raise DataError("--shape", f"expected three positive integers, got {options.img_shape}")
    if workers < 1:
        raise DataError("--workers", f"must be >= 1, got {workers}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise DataError(outdir, "exists and is not a folder")
    if outdir.resolve() == Path(indir).resolve():
        raise DataError(outdir, "is the input folder; write to another folder")
    saved = outdir / "qc" / "prepare.json"
    if saved.is_file() and json.loads(saved.read_text()) != options.to_json():
        raise DataError(outdir, f"was prepared with other options ({saved}); use a new folder")


def _done(outdir, stem):
    paths = output_paths(outdir, stem)
    if not paths["row"].is_file() or not (paths["volume"].is_file() or paths["excluded"].is_file()):
        return None
    return json.loads(paths["row"].read_text())


def _iter_results(todo, outdir, options, workers, weight_files, max_voxels):
    """Yield (subject, row, problem) as subjects finish (in parallel with workers > 1)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        if _WORKER.get("weight_files") != weight_files:
            _WORKER.clear()
            _WORKER["weight_files"] = weight_files
        for subject in todo:
            yield (subject, *_run_one(subject, outdir, options, max_voxels))
        return
    # spawn: the parent may already run TensorFlow, which does not survive fork.
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_init_worker, initargs=(weight_files, threads))
    try:
        futures = {pool.submit(_run_one, s, outdir, options, max_voxels): s for s in todo}
        for future in concurrent.futures.as_completed(futures):
            yield (futures[future], *future.result())
    finally:  # also when the consumer stops at a bad input: drop what is not started yet
        pool.shutdown(wait=True, cancel_futures=True)


def place_flagged(outdir, rows, skip_bad):
    """Mark flagged rows and put each volume where it belongs: excluded/ when flagged and skip_bad, else OUTDIR."""
    reasons = qc.flag_reasons(rows)
    for row in rows:
        stem = row["output"][:-len(".nii.gz")]
        paths = output_paths(outdir, stem)
        flagged = row["output"] in reasons
        row["status"] = ("excluded" if skip_bad else "flagged") if flagged else "ok"
        row["flag"] = reasons.get(row["output"], "")
        source, target = (paths["volume"], paths["excluded"]) if flagged and skip_bad else \
            (paths["excluded"], paths["volume"])
        if source.is_file() and not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    return reasons


def prepare_folder(outdir, indir, *, voxel_size=2.0, img_shape=None, bias_correction=True, skull_strip="deepbet",
                   register="affine", workers=1, skip_bad=False, records=False, progress=None, weight_files=None,
                   max_voxels=DEFAULT_MAX_VOXELS, **records_options) -> dict:
    """Prepare every scan and FreeSurfer subject of `indir` into `outdir` (module docstring); returns a summary.

    weight_files: deepbet's (bbox_model, model) `.npz` (default: fetched into the cache). progress(done, total)
    is called per subject. A bad input stops the run with a DataError naming it (finished subjects stay
    done) unless skip_bad, which lists it and leaves flagged subjects out. records_options go to
    create_from_images3d (labels=participants.tsv, ...)."""
    options = PrepareOptions(float(voxel_size), None if img_shape is None else tuple(int(n) for n in img_shape),
                             bool(bias_correction), skull_strip, register)
    check_options(outdir, indir, options, workers)
    subjects, ignored = list_subjects(indir)
    outdir = Path(outdir)
    (outdir / "qc").mkdir(parents=True, exist_ok=True)
    write_json_atomic(outdir / "qc" / "prepare.json", options.to_json())
    rows = {s.stem: _done(outdir, s.stem) for s in subjects}
    todo, errors = [], []
    for subject in (s for s in subjects if rows[s.stem] is None):
        try:
            check_header(subject, max_voxels)
            todo.append(subject)
        except DataError as err:
            if not skip_bad:
                raise
            errors.append(_error_row(subject, str(err)))
    needs_deepbet = skull_strip == "deepbet" and any(not s.freesurfer for s in todo)
    if needs_deepbet and weight_files is None:
        weight_files = deepbet_weight_files()
    done = len(subjects) - len(todo)
    results = _iter_results(todo, outdir, options, workers, weight_files if needs_deepbet else None, max_voxels)
    try:
        for subject, row, problem in results:
            if problem is not None:
                if not skip_bad:
                    raise DataError(subject.path, problem.split(": ", 1)[-1])
                errors.append(_error_row(subject, problem))
            else:
                rows[subject.stem] = row
            done += 1
            if progress is not None:
                progress(done, len(subjects))
    finally:
        results.close()
    finished = [rows[s.stem] for s in subjects if rows[s.stem] is not None]
    reasons = place_flagged(outdir, finished, skip_bad)
    report = qc.write_report(outdir / "qc" / "prepare_report.tsv", finished + errors)
    summary = {"outdir": str(outdir), "report": str(report), "num_subjects": len(subjects),
               "prepared": len(finished), "resumed": len(subjects) - len(todo) - len(errors),
               "errors": [e["warnings"][0] for e in errors],
               "flagged": {name: reasons[name] for name in sorted(reasons)}, "ignored": ignored,
               "excluded": skip_bad, "records": None}
    if records:
        from tf3dstylegan.data.create import create_from_images3d  # pylint: disable=import-outside-toplevel
        shape = options.grid()[0]
        summary["records"] = create_from_images3d(outdir / "records", outdir, img_shape=None, voxel_size=None,
                                                  base_size=_base_size(shape), **records_options)
    return summary


def _error_row(subject, problem):
    return {"file": subject.path, "output": "", "status": "error", "warnings": [problem]}


def _base_size(shape):
    """The base block size of a grid: the shape divided by its largest common power of two (at most 2**5)."""
    factor = 1
    while factor < 32 and all(n % (2 * factor) == 0 for n in shape):
        factor *= 2
    return tuple(n // factor for n in shape)
