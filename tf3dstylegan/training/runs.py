"""Run folders `<outdir>/<id>-<config name>/`: numbering, finding the run of the same job to resume, and the lock
that keeps a second writer out (and clears the temporary files a killed writer left)."""
import fcntl
import json
import os
import re
from pathlib import Path

from tf3dstylegan import checkpoints
from tf3dstylegan.training.job import differences, recorded_job

_RUN = re.compile(r"^(\d{5})-(.+)$")


def resolve_run(outdir, name, resume, job, log=print):
    """(run folder, checkpoint folder or network file or None) for a resume setting and the job to run
    (training.job): "auto" continues the newest run of this config whose job is the same (and logs why each
    newer one is not continued); a run folder must hold the same job (ValueError naming what differs)."""
    outdir = Path(outdir)
    if resume in (None, "none", ""):
        return _next_run(outdir, name), None
    if resume == "auto":
        for run in _runs(outdir, name):
            reason = _why_not_continued(run, job)
            if reason is None:
                _log_incomplete(run, log)
                return run, run / "checkpoints"
            log(f"not resuming {run}: {reason}")
        return _next_run(outdir, name), None
    path = Path(resume)
    if path.is_dir():
        reason = _why_not_continued(path, job)
        if reason is not None:
            raise ValueError(f"--resume {path}: {reason}")
        _log_incomplete(path, log)
        return path, path / "checkpoints"
    if not path.is_file():
        raise ValueError(f"--resume {path}: no such run folder or network file")
    return _next_run(outdir, name), path


def _why_not_continued(run, job):
    """None when `run` holds `job` and a complete checkpoint, else why it cannot be continued; ValueError for a
    run of this job whose checkpoints are all incomplete (continuing from scratch would hide that)."""
    options = run / "training_options.json"
    if not options.is_file():
        return "it has no training_options.json (not a run folder, or one that never started)"
    try:
        recorded = recorded_job(json.loads(options.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        text = str(err.args[0]) if err.args else type(err).__name__
        return f"its training_options.json is unreadable ({text.splitlines()[0] if text else type(err).__name__})"
    differ = differences(recorded, job)
    if differ:
        return "; ".join(differ[:2]) + (f"; and {len(differ) - 2} more" if len(differ) > 2 else "")
    if not checkpoints.candidates(run / "checkpoints"):
        incomplete = checkpoints.incomplete(run / "checkpoints")
        if incomplete:
            raise ValueError(f"{run / 'checkpoints'}: no complete checkpoint ({', '.join(incomplete)} lack their "
                             f".index: incomplete or damaged); restore them, or start a new run with --resume none")
        return "it has no complete checkpoint yet"
    return None


def _log_incomplete(run, log):
    """Say which checkpoints newer than the one resumed from are incomplete (skipped)."""
    folder = run / "checkpoints"
    newest = checkpoints.checkpoint_step(checkpoints.candidates(folder)[0][0])
    skipped = [name for name in checkpoints.incomplete(folder) if checkpoints.checkpoint_step(name) > newest]
    if skipped:
        log(f"skipping {', '.join(skipped)} in {run / 'checkpoints'}: incomplete (no .index)")


def _runs(outdir, name):
    """Run folders of this config, newest first."""
    if not outdir.is_dir():
        return []
    runs = [p for p in outdir.iterdir() if p.is_dir() and _RUN.match(p.name) and _RUN.match(p.name).group(2) == name]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def _next_run(outdir, name):
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"--outdir {outdir}: exists and is not a folder")
    ids = [int(_RUN.match(p.name).group(1)) for p in outdir.iterdir() if _RUN.match(p.name)] if outdir.is_dir() else []
    return outdir / f"{max(ids, default=-1) + 1:05d}-{name}"


_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9.]+)?$")  # tf3dstylegan.io.atomic_path's names


def _remove_stale_temporaries(run_dir):
    """Temporary files and checkpoint folders of a writer that was killed (the lock says none is running)."""
    for path in run_dir.iterdir():
        if _TEMPORARY.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink()
    checkpoints.remove_temporaries(run_dir / "checkpoints")


class RunLock:
    """An exclusive lock on a run folder (`<run>/.lock`) for as long as a process trains into it. A folder this
    lock created is removed again when the run fails before writing anything into it."""

    LOCK_FILE = ".lock"

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.LOCK_FILE
        self._fd, self._created = None, False

    def __enter__(self):
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ValueError(f"{self.run_dir}: another process is training into this run folder") from None
        _remove_stale_temporaries(self.run_dir)
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None and self._created and [p.name for p in self.run_dir.iterdir()] == [self.LOCK_FILE]:
            self.path.unlink()
            self.run_dir.rmdir()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        return False
