"""The protobuf wire format, the part the project's messages use (tf.train.Example, TensorBoard's Event).

A message is a sequence of fields, each a varint key (field number << 3 | wire type) and a value: a varint,
8 or 4 little-endian bytes, or a varint length and that many bytes (strings, sub-messages, packed lists).
Reading checks every length against the buffer, so a crafted message fails with WireError, never reads past
its end or allocates more than it holds.
"""
import struct

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
MAX_VARINT_BYTES = 10  # a 64-bit value


class WireError(ValueError):
    """A malformed protobuf message."""


def encode_varint(value) -> bytes:
    """The varint of a 64-bit integer (negative values as their two's complement, 10 bytes, as protobuf does)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(field, wire_type) -> bytes:
    return encode_varint(field << 3 | wire_type)


def varint_field(field, value) -> bytes:
    return key(field, VARINT) + encode_varint(value)


def double_field(field, value) -> bytes:
    return key(field, FIXED64) + struct.pack("<d", value)


def bytes_field(field, payload) -> bytes:
    """A length-delimited field: a string, a sub-message or a packed list."""
    return b"".join((key(field, LENGTH_DELIMITED), encode_varint(len(payload)), payload))


def read_varint(buffer, pos):
    """(value, position after it) of the varint at buffer[pos]."""
    value = shift = 0
    for i in range(pos, min(pos + MAX_VARINT_BYTES, len(buffer))):
        byte = buffer[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & ((1 << 64) - 1), i + 1
        shift += 7
    raise WireError(f"varint at byte {pos} runs past the end of the message or over {MAX_VARINT_BYTES} bytes")


def signed64(value) -> int:
    """A varint's 64 bits read as int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buffer):
    """Yield (field number, wire type, value) of a message: an int for VARINT, FIXED64 and FIXED32 (the raw
    bits), a memoryview of `buffer` for LENGTH_DELIMITED. WireError on a truncated field or a group."""
    view = memoryview(buffer)
    pos, end = 0, len(view)
    while pos < end:
        start = pos
        tag, pos = read_varint(view, pos)
        field, wire_type = tag >> 3, tag & 7
        if field == 0:
            raise WireError(f"field number 0 at byte {start}")
        if wire_type == VARINT:
            value, pos = read_varint(view, pos)
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if pos + size > end:
                raise WireError(f"field {field} at byte {start} runs past the end of the message")
            value = int.from_bytes(view[pos:pos + size], "little")
            pos += size
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(view, pos)
            if length > end - pos:
                raise WireError(f"field {field} at byte {start} claims {length} bytes, past the end of the message")
            value = view[pos:pos + length]
            pos += length
        else:
            raise WireError(f"field {field} at byte {start} has wire type {wire_type} (groups are not supported)")
        yield field, wire_type, value


def packed_varints(view):
    """The values of a packed repeated varint field."""
    values, pos = [], 0
    while pos < len(view):
        value, pos = read_varint(view, pos)
        values.append(value)
    return values
