"""Read the tensors and plain attributes of a TorchScript archive without torch.

A TorchScript file is a zip: `<root>/data.pkl` (a pickle of the module tree) plus `<root>/data/<key>`
raw little-endian storages. The pickle is read with a restricted Unpickler: `__torch__.*` module classes
become inert `ScriptModule` records, `torch._utils._rebuild_tensor_v2` builds a NumPy view of a storage,
`torch.jit._pickle.build_*list` and `collections.OrderedDict` build plain containers; any other global is
refused. No code from the archive is ever executed (its `code/` folder is ignored). Every storage and every
tensor is charged to an ElementBudget (what the expected network needs) before it is allocated, and a tensor may
not view more elements than its storage holds (a stride-0 view of one element as [2^15, 2^15] is refused).
"""
import collections
import functools
import io
import math
import pickle
import zipfile

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


MAX_PICKLE_BYTES = 64 << 20
MAX_ELEMENTS = 1 << 27  # array elements a weights file may make by default: a ResNet-152's weights fit twice


class ElementBudget:
    """The array elements a weights file may still make (storages read plus tensors built), charged before each
    allocation; `error` (an exception class) when a file asks for more."""

    def __init__(self, limit, error):
        self.limit, self.left, self.error = int(limit), int(limit), error

    def take(self, count, what):
        if count > self.left:
            raise self.error(f"{what}: {count:,} elements are more than the expected network's weights need (at "
                             f"most {self.limit:,} in all)")
        self.left -= count


class TorchScriptError(ValueError):
    """The archive is not a TorchScript file this reader understands (or asks for a forbidden global)."""


class ScriptModule:
    """Inert stand-in for a pickled `__torch__.*` module: its class name and its attribute dict."""

    type_name = "__torch__.Module"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise TorchScriptError(f"module {self.type_name}: state is {type(state).__name__}, not a dict")
        self.attributes = dict(state)


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None, budget=None):
    """A NumPy copy of `storage[offset:]` viewed with torch's size/stride (strides in elements); its layout checked
    against the storage and its size charged to `budget` before the copy exists."""
    del requires_grad, backward_hooks, metadata
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or int(storage_offset) < 0:
        raise TorchScriptError(f"bad tensor layout size={size} stride={stride}")
    last = int(storage_offset) + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    if last >= max(storage.size, 1):
        raise TorchScriptError(f"tensor of size {size} overruns its storage of {storage.size} elements")
    count = math.prod(size)
    if count > storage.size - int(storage_offset):
        raise TorchScriptError(f"tensor of size {size} with strides {stride} views {count:,} elements of a storage "
                               f"of {storage.size:,}: repeated (expanded) views are not weights")
    if budget is not None:
        budget.take(count, f"tensor of size {size}")
    base = storage[int(storage_offset):]
    view = np.lib.stride_tricks.as_strided(base, size, [s * storage.itemsize for s in stride])
    return np.array(view)


def _build_list(*args):
    return list(args[0]) if len(args) == 1 else list(args)


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch.jit._pickle", "build_intlist"): _build_list,
    ("torch.jit._pickle", "build_doublelist"): _build_list,
    ("torch.jit._pickle", "build_boollist"): _build_list,
    ("torch.jit._pickle", "build_tensorlist"): _build_list,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, read_storage, budget):
        super().__init__(file)
        self._read_storage, self._budget = read_storage, budget

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return functools.partial(_rebuild_tensor_v2, budget=self._budget)
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module.startswith("__torch__"):
            type_name = f"{module}.{name}"
            return type(name, (ScriptModule,), {"type_name": type_name})
        raise TorchScriptError(f"refusing pickled global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchScriptError(f"unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchScriptError(f"unknown storage type {storage_type!r}")
        return self._read_storage(str(key), storage_type.dtype, int(numel))


def archive_layout(archive, error):
    """(member names, root folder, root pickle) of a torch zip archive: one `<root>/data.pkl`, little-endian;
    `error` (an exception class) otherwise."""
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise error("no <root>/data.pkl in the zip archive")
    root = pickles[0][:-len("data.pkl")]
    if f"{root}byteorder" in names and archive.read(f"{root}byteorder").strip() != b"little":
        raise error("only little-endian archives are supported")
    return names, root, pickles[0]


def read_storage_member(archive, names, root, key, dtype, numel, error, budget):
    """The `numel` little-endian `dtype` values of storage `key`, its size checked (against the member and the
    budget) before anything is read: only those bytes are inflated, whatever the member claims."""
    member, itemsize = f"{root}data/{key}", np.dtype(dtype).itemsize
    if member not in names:
        raise error(f"storage {key} missing from the archive")
    budget.take(numel, f"storage {key}")
    size = archive.getinfo(member).file_size
    if size < numel * itemsize:
        raise error(f"storage {key} holds {size // itemsize} elements, expected {numel}")
    with archive.open(member) as f:
        return np.frombuffer(f.read(numel * itemsize), dtype=np.dtype(dtype).newbyteorder("<"))


def read_archive(source, max_elements=MAX_ELEMENTS):
    """The root `ScriptModule` of a TorchScript zip (a path, bytes or a binary file object), making at most
    `max_elements` array elements."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise TorchScriptError(f"not a TorchScript zip archive ({e})") from e
    with archive:
        names, root, pickled = archive_layout(archive, TorchScriptError)
        budget, storages = ElementBudget(max_elements, TorchScriptError), {}

        def read_storage(key, dtype, numel):  # once per key, however many tensors view it
            if key not in storages:
                storages[key] = read_storage_member(archive, names, root, key, dtype, numel, TorchScriptError, budget)
            return storages[key]

        if archive.getinfo(pickled).file_size > MAX_PICKLE_BYTES:
            raise TorchScriptError(f"{pickled} is larger than {MAX_PICKLE_BYTES} bytes")
        try:
            tree = _RestrictedUnpickler(io.BytesIO(archive.read(pickled)), read_storage, budget).load()
        except (pickle.UnpicklingError, EOFError, KeyError, AttributeError) as e:
            raise TorchScriptError(f"cannot read {pickled} ({e})") from e
    if not isinstance(tree, ScriptModule):
        raise TorchScriptError("data.pkl does not hold a module")
    return tree


def flatten(module, prefix=""):
    """{dotted name: value} of every tensor (np.ndarray), int, float, bool or list of numbers in the tree."""
    out = {}
    for key, value in getattr(module, "attributes", {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, ScriptModule):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (np.ndarray, int, float, list, tuple)) and not isinstance(value, bool):
            out[name] = value
    return out


def read_tensors(source, max_elements=MAX_ELEMENTS):
    """Flat {dotted name: np.ndarray} of the archive's tensors (attributes such as `padding` included)."""
    return flatten(read_archive(source, max_elements))
