"""Read a plain `torch.save` file (a state dict, possibly wrapped in a dict) without torch.

Two layouts: the zip archive of torch >= 1.6 (`<root>/data.pkl` plus raw storages `<root>/data/<key>`) and
the legacy stream of torch 0.4-1.5 (pickled magic number, protocol 1001 and system info, then the object
pickle, then the pickled list of storage keys, then each storage as a little-endian int64 element count
followed by its raw bytes). The object pickle is read with a restricted Unpickler that knows only
`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter` and
torch's storage types; any other global (os.system, builtins.eval, ...) is refused before anything runs.
Sizes are checked before allocating: each storage's declared size against the archive member or the bytes
left in the file, every tensor's layout against its storage, and all of them against `max_elements` (what the
expected network needs; torchscript.ElementBudget). Tensors come back as NumPy arrays.
"""
import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from tf3dstylegan.metrics import torchscript

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class TorchSaveError(ValueError):
    """The file is not a torch.save file this reader understands, or it names a forbidden global."""


class _PendingStorage:
    """A storage named by the pickle, read once the pickle is parsed."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), numel


class _PendingTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    del unused  # requires_grad, backward hooks, metadata
    if not isinstance(storage, _PendingStorage):
        raise TorchSaveError("tensor without a storage")
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused  # requires_grad, backward hooks
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in torchscript.STORAGE_DTYPES:
            return torchscript.STORAGE_DTYPES[name]
        raise TorchSaveError(f"refusing pickled global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchSaveError(f"unknown persistent id {pid!r}"[:200])
        dtype, key, numel = pid[1], str(pid[2]), pid[4]
        if len(pid) == 6 and pid[5] is not None:
            raise TorchSaveError("storage views (torch < 0.4 files) are not supported")
        if not isinstance(dtype, type) or not isinstance(numel, int) or numel < 0:
            raise TorchSaveError(f"bad storage record {pid!r}"[:200])
        storage = self.storages.setdefault(key, _PendingStorage(key, dtype, numel))
        if storage.dtype != np.dtype(dtype) or storage.numel != numel:
            raise TorchSaveError(f"storage {key} declared twice with different types or sizes")
        return storage


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header and key list: plain values only."""

    def find_class(self, module, name):
        raise TorchSaveError(f"refusing pickled global {module}.{name}")


def _unpickle(raw_or_file):
    unpickler = _Unpickler(raw_or_file)
    try:
        return unpickler.load(), unpickler.storages
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, IndexError, KeyError) as e:
        raise TorchSaveError(f"cannot unpickle ({type(e).__name__}: {e})"[:300]) from e


def _resolve(value, arrays, budget):
    """Replace pending tensors in nested dicts/lists/tuples by NumPy arrays."""
    if isinstance(value, _PendingTensor):
        storage = arrays[value.storage.key]
        try:
            return torchscript._rebuild_tensor_v2(storage, value.offset, value.size, value.stride, budget=budget)
        except torchscript.TorchScriptError as e:
            raise TorchSaveError(str(e)) from None
    if isinstance(value, dict):
        return type(value)((k, _resolve(v, arrays, budget)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, arrays, budget) for v in value)
    return value


def _read_zip(archive, budget):
    names, root, pickled = torchscript.archive_layout(archive, TorchSaveError)
    if archive.getinfo(pickled).file_size > torchscript.MAX_PICKLE_BYTES:
        raise TorchSaveError(f"{pickled} is larger than {torchscript.MAX_PICKLE_BYTES} bytes")
    obj, storages = _unpickle(io.BytesIO(archive.read(pickled)))
    arrays = {key: torchscript.read_storage_member(archive, names, root, key, storage.dtype, storage.numel,
                                                   TorchSaveError, budget) for key, storage in storages.items()}
    return _resolve(obj, arrays, budget)


def _read_legacy(f, file_size, budget):
    try:
        header = [_PlainUnpickler(f).load() for _ in range(3)]
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise TorchSaveError(f"not a torch.save file ({type(e).__name__})") from e
    if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
        raise TorchSaveError("not a torch.save file (bad magic number or protocol)")
    if not (isinstance(header[2], dict) and header[2].get("little_endian", True)):
        raise TorchSaveError("only little-endian files are supported")
    obj, storages = _unpickle(f)
    try:
        keys = _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise TorchSaveError(f"cannot read the storage key list ({e})") from e
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise TorchSaveError("the storage key list does not match the pickled tensors")
    arrays = {}
    for key in map(str, keys):
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8).ljust(8, b"\0"))
        needed = storage.numel * storage.dtype.itemsize
        if numel != storage.numel or needed > file_size - f.tell():
            raise TorchSaveError(f"storage {key}: {numel} elements on file, {storage.numel} declared, "
                                 f"{file_size - f.tell()} bytes left")
        budget.take(numel, f"storage {key}")
        arrays[key] = np.frombuffer(f.read(needed), storage.dtype.newbyteorder("<"))
    return _resolve(obj, arrays, budget)


def load(path, max_elements=torchscript.MAX_ELEMENTS):
    """The object saved in `path` with tensors as NumPy arrays (zip or legacy torch.save layout), making at most
    `max_elements` array elements."""
    path = Path(path)
    if not path.is_file():
        raise TorchSaveError(f"{path}: no such file")
    budget = torchscript.ElementBudget(max_elements, TorchSaveError)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return _read_zip(archive, budget)
        except zipfile.BadZipFile as e:
            raise TorchSaveError(f"bad zip archive ({e})") from e
    with open(path, "rb") as f:
        return _read_legacy(f, path.stat().st_size, budget)
