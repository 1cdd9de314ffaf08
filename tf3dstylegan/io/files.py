"""Files written whole or not at all, and the cache folder.

Every output of the package goes through `atomic_path`/`write_*_atomic`: the data is written to a new,
exclusively created temporary name in the destination folder (never following a planted symlink) and renamed
over the destination only when complete, so a crash or a full disk never leaves a half-written file.
"""
import contextlib
import json
import os
import tempfile
from pathlib import Path


def cache_dir(path=None) -> Path:
    """The cache folder: `path`, else `$TF3DSTYLEGAN_CACHE`, else `~/.cache/tf3dstylegan`."""
    return Path(path or os.environ.get("TF3DSTYLEGAN_CACHE") or Path.home() / ".cache" / "tf3dstylegan")


def _suffix(path: Path) -> str:
    """'.nii.gz' for 'a.nii.gz', '.keras' for 'b.keras': kept on temporary names for writers that check it."""
    suffixes = path.suffixes[-2:] if path.name.endswith(".nii.gz") else path.suffixes[-1:]
    return "".join(suffixes)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a fresh temporary path beside `path` (same suffix); renames it to `path` if the block succeeds,
    removes it otherwise. The temporary name is created exclusively (O_EXCL), so no planted file is followed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + _suffix(path), dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private to the writer
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                import shutil
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, value) -> Path:
    """Write `value` as indented JSON (non-finite floats refused) to `path` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")
