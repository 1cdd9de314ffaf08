"""Run folders `<outdir>/<id>-<config name>/`: numbering, finding the run to resume, and the lock that keeps a
second writer out."""
import fcntl
import os
import re
from pathlib import Path

from tf3dstylegan import checkpoints

_RUN = re.compile(r"^(\d{5})-(.+)$")


def resolve_run(outdir, name, resume):
    """(run folder, checkpoint folder or network file or None) for a resume setting."""
    outdir = Path(outdir)
    if resume in (None, "none", "") or (resume == "auto" and not _runs(outdir, name)):
        return _next_run(outdir, name), None
    if resume == "auto":
        for run in _runs(outdir, name):
            if checkpoints.candidates(run / "checkpoints"):
                return run, run / "checkpoints"
        return _next_run(outdir, name), None
    path = Path(resume)
    if path.is_dir():
        if not checkpoints.candidates(path / "checkpoints"):
            raise ValueError(f"--resume {path}: no complete checkpoint in this run folder")
        return path, path / "checkpoints"
    if not path.is_file():
        raise ValueError(f"--resume {path}: no such run folder or network file")
    return _next_run(outdir, name), path


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
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None and self._created and [p.name for p in self.run_dir.iterdir()] == [self.LOCK_FILE]:
            self.path.unlink()
            self.run_dir.rmdir()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        return False
