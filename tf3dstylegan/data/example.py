"""tf.train.Example without TensorFlow: the subset the project's records use (a features map of bytes_list,
float_list and int64_list features), in protobuf's wire format (tensorflow/core/example/*.proto).

Encoding writes the map in key order and the numeric lists packed: the bytes of TensorFlow's
SerializeToString(deterministic=True) (without it protobuf orders the map by a hash seeded per process, so the
same Example's bytes change from run to run; ours do not). Decoding also reads unpacked lists and skips unknown
fields, as protobuf does. Bytes values come back as memoryviews of the record (no copy of a volume's payload).
"""
import collections

import numpy as np

from tf3dstylegan.io.protobuf import (FIXED32, LENGTH_DELIMITED, VARINT, WireError, encode_varint, iter_fields,
                                      key, packed_varints, signed64)

# Field numbers: Example.features = 1; Features.feature = 1 (map entry: key = 1, value = 2);
# Feature.{bytes_list, float_list, int64_list} = 1, 2, 3; *List.value = 1.
KIND_FIELDS = {"bytes": 1, "float": 2, "int64": 3}
KINDS = {number: kind for kind, number in KIND_FIELDS.items()}

Feature = collections.namedtuple("Feature", ["kind", "values"])
Feature.__doc__ = """One feature: kind 'bytes' (values: bytes-like), 'float' (float32 array), 'int64' (ints) or None
(a feature message without a list)."""


def _delimited(field, parts):
    """Chunks of a length-delimited field holding the concatenation of `parts` (joined once at the end)."""
    return [key(field, LENGTH_DELIMITED), encode_varint(sum(len(p) for p in parts)), *parts]


def _list_parts(kind, values):
    if kind == "bytes":
        return [chunk for value in values for chunk in _delimited(1, [value])]
    if kind == "float":
        packed = np.asarray(values, "<f4").tobytes()
    elif kind == "int64":
        packed = b"".join(encode_varint(int(v)) for v in values)
    else:
        raise ValueError(f"unknown feature kind {kind!r} (expected one of {', '.join(KIND_FIELDS)})")
    return _delimited(1, [packed]) if packed else []


def encode_example(features) -> bytes:
    """The serialized tf.train.Example of {name: Feature(kind, values)} (or (kind, values) pairs)."""
    entries = []
    for name in sorted(features):
        kind, values = features[name]
        parts = _list_parts(kind, values)
        feature = _delimited(KIND_FIELDS[kind], parts)
        entries += _delimited(1, _delimited(1, [name.encode("utf-8")]) + _delimited(2, feature))
    return b"".join(_delimited(1, entries))


def _decode_list(kind, view):
    values = []
    for field, wire_type, value in iter_fields(view):
        if field != 1:
            continue  # fields of another number or wire type are unknown fields to protobuf: skipped
        if kind == "bytes" and wire_type == LENGTH_DELIMITED:
            values.append(value)
        elif kind == "float" and wire_type == LENGTH_DELIMITED:
            if len(value) % 4:
                raise WireError(f"packed FloatList of {len(value)} bytes, not a multiple of 4")
            values.append(np.frombuffer(value, "<f4"))
        elif kind == "float" and wire_type == FIXED32:
            values.append(np.array([value], "<u4").view("<f4"))
        elif kind == "int64" and wire_type == LENGTH_DELIMITED:
            values += [signed64(v) for v in packed_varints(value)]
        elif kind == "int64" and wire_type == VARINT:
            values.append(signed64(value))
    if kind == "float":
        return np.concatenate(values) if values else np.zeros(0, np.float32)
    return values


def _decode_feature(view):
    feature = Feature(None, [])  # no kind set
    for field, wire_type, value in iter_fields(view):
        if field in KINDS and wire_type == LENGTH_DELIMITED:
            feature = Feature(KINDS[field], _decode_list(KINDS[field], value))  # a oneof: the last one counts
    return feature


def _delimited_fields(view, number):
    """The values of the length-delimited fields `number` of a message."""
    return [value for field, wire_type, value in iter_fields(view) if field == number and wire_type == LENGTH_DELIMITED]


def decode_example(payload):
    """{name: Feature} of a serialized tf.train.Example (a feature without a kind: Feature(None, [])); WireError
    if it is not one. Repeated occurrences merge as in protobuf (the last entry of a name counts)."""
    features = {}
    for features_message in _delimited_fields(payload, 1):
        for entry in _delimited_fields(features_message, 1):
            name, feature = b"", memoryview(b"")
            for field, wire_type, value in iter_fields(entry):
                if wire_type == LENGTH_DELIMITED and field in (1, 2):
                    name, feature = (value, feature) if field == 1 else (name, value)
            try:
                features[bytes(name).decode("utf-8")] = _decode_feature(feature)
            except UnicodeDecodeError:
                raise WireError("a feature name is not UTF-8") from None
    return features


def feature_values(features, name, kind):
    """The values of feature `name` if it is of `kind`, else [] (as protobuf reads a missing or other list)."""
    feature = features.get(name)
    return feature.values if feature is not None and feature.kind == kind else []
