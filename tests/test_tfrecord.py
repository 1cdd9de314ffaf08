"""TFRecord framing and tf.train.Example without TensorFlow, against TensorFlow's own writer and parser."""
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from tf3dstylegan.data.example import Feature, decode_example, encode_example
from tf3dstylegan.io.protobuf import WireError, encode_varint, read_varint, signed64
from tf3dstylegan.io.tfrecord import (RecordError, masked_crc32c, read_payload, record_spans, write_record,
                                      iter_records, open_record_file)


def payloads(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [b""] + [rng.bytes(int(rng.integers(1, 5000))) for _ in range(n - 1)]


def write_ours(path, items):
    with open(path, "wb") as f:
        for item in items:
            write_record(f, item)


def write_tf(path, items):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for item in items:
            writer.write(item)


def test_crc32c_and_its_mask_are_tfrecords():
    assert masked_crc32c(b"") == 0xA282EAD8  # CRC32C of nothing is 0: only the mask's constant
    crc = 0xE3069283  # CRC32C("123456789"), the standard check value
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_files_are_byte_identical_to_tensorflows_writer(tmp_path):
    items = payloads()
    write_ours(tmp_path / "ours", items)
    write_tf(tmp_path / "tf", items)
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "tf").read_bytes()


def test_tensorflow_reads_ours_and_we_read_tensorflows(tmp_path):
    items = payloads(seed=1)
    write_ours(tmp_path / "ours", items)
    write_tf(tmp_path / "tf", items)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours"))] == items
    assert list(iter_records(tmp_path / "tf")) == items
    spans = list(record_spans(tmp_path / "tf"))
    assert [length for _, length in spans] == [len(p) for p in items]
    with open_record_file(tmp_path / "tf") as f:
        assert [read_payload(f.fileno(), "tf", i, *span) for i, span in enumerate(spans)] == items


def field(number, wire, body):
    return encode_varint(number << 3 | wire) + body


def delimited(number, body):
    return field(number, 2, encode_varint(len(body)) + body)


def tf_example(features):
    """TensorFlow's Example of {name: (kind, values)}."""
    made = {"bytes": lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)),
            "float": lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v)),
            "int64": lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))}
    return tf.train.Example(features=tf.train.Features(
        feature={name: made[kind](values) for name, (kind, values) in features.items()}))


def as_plain(features):
    """{name: (kind, values as Python lists)} of decode_example's output."""
    return {name: (f.kind, [bytes(v) for v in f.values] if f.kind == "bytes" else [float(v) if f.kind == "float"
                                                                                    else v for v in f.values])
            for name, f in features.items()}


FEATURES = {"shape": ("int64", [1, 12, 16, 20]), "data": ("bytes", [np.arange(6, dtype="<f4").tobytes()]),
            "big": ("int64", [-1, -(2 ** 63), 2 ** 63 - 1, 0, 300]), "empty": ("float", []),
            "floats": ("float", [0.5, -2.25, 1e-30]), "names": ("bytes", [b"", b"\x00\xff", "é".encode()]),
            "no ints": ("int64", []), "ünïcode": ("bytes", [b"x"])}


def test_examples_are_byte_identical_to_tensorflows_and_round_trip():
    ours = encode_example(FEATURES)
    # Keys in order, lists packed. (Without deterministic=True protobuf writes the map in an order of its hash
    # table, which changes from process to process: the same Example's bytes are not reproducible there.)
    assert ours == tf_example(FEATURES).SerializeToString(deterministic=True)
    parsed = tf.train.Example.FromString(ours).features.feature
    assert list(parsed["big"].int64_list.value) == FEATURES["big"][1]
    decoded = as_plain(decode_example(tf_example(FEATURES).SerializeToString()))
    assert decoded == {name: (kind, [float(np.float32(v)) for v in values] if kind == "float" else values)
                       for name, (kind, values) in FEATURES.items()}


def test_unpacked_lists_and_unknown_fields_are_read_as_protobuf_reads_them():
    ints = b"".join(field(1, 0, encode_varint(v)) for v in (3, -7, 2 ** 40))  # unpacked int64s
    floats = b"".join(field(1, 5, struct.pack("<f", v)) for v in (1.5, -4.0)) + delimited(1, struct.pack("<f", 8.0))
    unknown = field(9, 0, encode_varint(5)) + field(10, 1, b"\0" * 8) + delimited(11, b"junk")
    entries = [delimited(1, delimited(1, b"i") + delimited(2, delimited(3, ints) + unknown)),
               delimited(1, delimited(1, b"f") + delimited(2, delimited(2, floats))),
               delimited(1, delimited(1, b"n") + delimited(2, b""))]
    message = delimited(1, b"".join(entries)) + unknown
    theirs = tf.train.Example.FromString(message).features.feature  # valid protobuf
    ours = decode_example(message)
    assert ours["i"].values == list(theirs["i"].int64_list.value) == [3, -7, 2 ** 40]
    np.testing.assert_array_equal(ours["f"].values, list(theirs["f"].float_list.value))
    assert ours["n"] == Feature(None, []) and theirs["n"].WhichOneof("kind") is None


def entry(name, feature):
    """A Features map entry (name -> serialized Feature) as an Example."""
    return delimited(1, delimited(1, delimited(1, name) + delimited(2, feature)))


@pytest.mark.parametrize("message, problem", [
    (b"\x0a\x05\x0a\x03", "claims 5 bytes"),  # a length past the end
    (b"\x0a" + b"\xff" * 11, "varint"),  # a varint of more than 10 bytes
    (b"\x0b\x0c", "wire type 3"),  # a group
    (b"\x00\x01", "field number 0"),
    (entry(b"\xff", delimited(1, b"")), "not UTF-8"),
    (entry(b"a", delimited(2, delimited(1, b"\0" * 3))), "not a multiple of 4"),  # a packed float list of 3 bytes
    (entry(b"a", delimited(3, delimited(1, b"\x80"))), "runs past the end"),  # a packed int list ending inside a varint
])
def test_malformed_examples_are_wire_errors(message, problem):
    with pytest.raises(WireError, match=problem):
        decode_example(message)


def test_mutated_examples_are_read_as_protobuf_reads_them():
    """Random byte changes and cuts: we refuse (WireError, nothing else) exactly what protobuf refuses, and read
    the rest to the same features."""
    rng = np.random.default_rng(0)
    valid = encode_example(FEATURES)
    read = 0
    for trial in range(400):
        message = bytearray(valid)
        for position in rng.integers(0, len(message), int(rng.integers(1, 3))):
            message[position] = int(rng.integers(256))
        message = bytes(message[:int(rng.integers(len(message)))] if trial % 4 == 0 else message)  # or cut short
        try:
            theirs = as_plain(decode_example(tf.train.Example.FromString(message).SerializeToString(
                deterministic=True)))
        except Exception:  # pylint: disable=broad-except; protobuf's DecodeError
            with pytest.raises(WireError):
                decode_example(message)
            continue
        assert as_plain(decode_example(message)) == theirs
        read += 1
    assert 50 < read < 350  # both outcomes were exercised


def test_varints_round_trip_at_the_edges():
    for value in (0, 1, 127, 128, 2 ** 32, 2 ** 63 - 1, -1, -(2 ** 63)):
        decoded, end = read_varint(encode_varint(value), 0)
        assert signed64(decoded) == value and end == len(encode_varint(value))


def corrupt(path, position, flip=0xFF):
    data = bytearray(path.read_bytes())
    data[position] ^= flip
    path.write_bytes(bytes(data))


def test_bad_crcs_and_truncation_name_the_file_the_record_and_its_byte(tmp_path):
    path = tmp_path / "x.tfrecords"
    items = payloads(3, seed=2)
    write_ours(path, items)
    second = 12 + len(items[0]) + 4
    corrupt(path, second + 12 + 5)  # a payload byte of record 1
    with pytest.raises(RecordError) as err:
        list(iter_records(path))
    assert str(err.value) == f"{path}: record 1: corrupt (data CRC mismatch, record at byte {second})"
    with open_record_file(path) as f, pytest.raises(RecordError, match="record 1: corrupt"):
        read_payload(f.fileno(), path, 1, *list(record_spans(path))[1])
    write_ours(path, items)
    corrupt(path, second + 2)  # its length
    for reader in (iter_records, record_spans):
        with pytest.raises(RecordError, match=f"record 1: corrupt \\(length CRC mismatch, record at byte {second}"):
            list(reader(path))
    write_ours(path, items)
    path.write_bytes(path.read_bytes()[:-3])
    for reader in (iter_records, record_spans):
        with pytest.raises(RecordError, match=r"truncated record file \(record 2 at byte"):
            list(reader(path))
    path.write_bytes(path.read_bytes()[:second + 5])
    with pytest.raises(RecordError, match=f"partial header at byte {second}"):
        list(iter_records(path))


def test_a_length_beyond_the_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.tfrecords"
    length = struct.pack("<Q", 2 ** 60)  # a consistent header claiming an exabyte
    path.write_bytes(length + struct.pack("<I", masked_crc32c(length)) + b"\0" * 100)
    for reader in (iter_records, record_spans):
        with pytest.raises(RecordError, match="record 0 at byte 0 ends past the end"):
            list(reader(path))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(RecordError, match="not a regular file"):
        list(iter_records(tmp_path / "fifo"))
