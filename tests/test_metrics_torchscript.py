"""The torch-free TorchScript reader: tensors, views and attributes; forbidden globals are refused."""
import io
import struct
import zipfile

import numpy as np
import pytest

from tf3dstylegan.metrics import torchscript


def _str(s):
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(i):
    return b"J" + struct.pack("<i", i)


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def _tensor(key, storage, numel, offset, size, stride):
    pid = _tuple(_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel)) + b"Q"
    hooks = _global("collections", "OrderedDict") + b")R"
    args = _tuple(pid, _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89", hooks)
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _module(type_module, type_name, items):
    body = b"".join(_str(k) + v for k, v in items)
    return _global(type_module, type_name) + b")\x81}(" + body + b"ub"


def _archive(pickle_bytes, storages):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3")
        for key, array in storages.items():
            z.writestr(f"archive/data/{key}", array.tobytes())
    return buffer.getvalue()


def test_reads_tensors_views_and_attributes():
    weight = np.arange(6, dtype=np.float32)
    bias = np.array([0.5, -1.5])
    child = _module("__torch__.net", "Child", [("bias", _tensor("1", "DoubleStorage", 2, 0, [2], [1]))])
    root = _module("__torch__.net", "Root", [
        ("training", b"\x88"),
        ("weight", _tensor("0", "FloatStorage", 6, 0, [2, 3], [3, 1])),
        ("weight_t", _tensor("0", "FloatStorage", 6, 0, [3, 2], [1, 3])),
        ("tail", _tensor("0", "FloatStorage", 6, 2, [3], [1])),
        ("padding", _global("torch.jit._pickle", "build_intlist") + _tuple(b"](" + _int(1) + _int(2) + b"e") + b"R"),
        ("stride", _int(2)),
        ("child", child),
    ])
    tensors = torchscript.read_tensors(_archive(b"\x80\x02" + root + b".", {"0": weight, "1": bias}))
    np.testing.assert_array_equal(tensors["weight"], weight.reshape(2, 3))
    np.testing.assert_array_equal(tensors["weight_t"], weight.reshape(2, 3).T)
    np.testing.assert_array_equal(tensors["tail"], weight[2:5])
    np.testing.assert_array_equal(tensors["child.bias"], bias)
    assert tensors["child.bias"].dtype == np.float64
    assert tensors["padding"] == [1, 2] and tensors["stride"] == 2 and "training" not in tensors


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("torch", "load")])
def test_refuses_other_globals(module, name, tmp_path):
    marker = tmp_path / "ran"
    evil = _global(module, name) + _tuple(_str(f"touch {marker}")) + b"R"
    root = _module("__torch__.net", "Root", [("x", evil)])
    with pytest.raises(torchscript.TorchScriptError, match="refusing"):
        torchscript.read_tensors(_archive(b"\x80\x02" + root + b".", {}))
    assert not marker.exists()


def test_bad_archives():
    with pytest.raises(torchscript.TorchScriptError, match="zip"):
        torchscript.read_tensors(b"not a zip")
    root = _module("__torch__.net", "Root", [("w", _tensor("0", "FloatStorage", 8, 0, [2, 4], [4, 1]))])
    with pytest.raises(torchscript.TorchScriptError, match="expected 8"):
        torchscript.read_tensors(_archive(b"\x80\x02" + root + b".", {"0": np.zeros(4, np.float32)}))
    root = _module("__torch__.net", "Root", [("w", _tensor("0", "FloatStorage", 4, 2, [2, 2], [2, 1]))])
    with pytest.raises(torchscript.TorchScriptError, match="overruns"):
        torchscript.read_tensors(_archive(b"\x80\x02" + root + b".", {"0": np.zeros(4, np.float32)}))
