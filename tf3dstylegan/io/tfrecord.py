"""TFRecord files without TensorFlow: the framing of the record files and of TensorBoard's event files.

A record is uint64 length, uint32 masked CRC32C of those 8 bytes, the payload, uint32 masked CRC32C of the
payload (little-endian; TensorFlow's core/lib/io/record_writer.cc). Writing gives the bytes TensorFlow's
writer gives; reading checks both CRCs and every length against the file's size before reading the payload,
so a crafted file fails with one line naming the file and the record, and never makes us allocate more than
the file holds.
"""
import os
import stat
import struct

import google_crc32c

HEADER_BYTES, FOOTER_BYTES = 12, 4
MASK_DELTA = 0xA282EAD8


class RecordError(ValueError):
    """A malformed record file; str() is '<file>: <problem>' like data.DataError (which callers turn it into)."""

    def __init__(self, path, problem):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


def masked_crc32c(data) -> int:
    """TFRecord's masked CRC32C of `data` (bytes): the CRC rotated right by 15 bits plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def write_record(file, payload):
    """Append one record holding `payload` (bytes) to an open binary file."""
    length = struct.pack("<Q", len(payload))
    file.write(length + struct.pack("<I", masked_crc32c(length)))
    file.write(payload)
    file.write(struct.pack("<I", masked_crc32c(payload)))


def open_record_file(path):
    """A binary file object of `path` for reading; RecordError unless it is a regular file (opening a FIFO
    does not block: it is opened without waiting and refused)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordError(path, "not a regular file (a FIFO, device or folder): expected TFRecords")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _parse_header(path, header, index, offset, size):
    """The payload length of the record whose 12-byte header starts at `offset` of a file of `size` bytes."""
    if len(header) < HEADER_BYTES:
        raise RecordError(path, f"truncated record file (partial header at byte {offset})")
    length, crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != crc:
        raise RecordError(path, f"record {index}: corrupt (length CRC mismatch, record at byte {offset})")
    if offset + HEADER_BYTES + length + FOOTER_BYTES > size:
        raise RecordError(path, f"truncated record file (record {index} at byte {offset} ends past the end)")
    return length


def record_spans(path):
    """Yield (offset, length) of every record's payload, reading and checking only the 12-byte headers."""
    with open_record_file(path) as f:
        size, offset, index = os.fstat(f.fileno()).st_size, 0, 0
        while offset < size:
            f.seek(offset)
            length = _parse_header(path, f.read(HEADER_BYTES), index, offset, size)
            yield offset + HEADER_BYTES, length
            offset += HEADER_BYTES + length + FOOTER_BYTES
            index += 1


def read_payload(fd, path, index, offset, length) -> bytes:
    """The payload of record `index` (payload at `offset`, as record_spans gives) of file descriptor `fd`,
    its CRC checked; safe to call from several threads (positional reads)."""
    payload, footer = os.pread(fd, length, offset), os.pread(fd, FOOTER_BYTES, offset + length)
    if len(payload) < length or len(footer) < FOOTER_BYTES:
        raise RecordError(path, f"truncated record file (record {index} at byte {offset - HEADER_BYTES} "
                                "ends past the end)")
    if masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
        raise RecordError(path, f"record {index}: corrupt (data CRC mismatch, record at byte "
                                f"{offset - HEADER_BYTES})")
    return payload


def iter_records(path):
    """Yield every record's payload (bytes) of a file in order, both CRCs checked."""
    with open_record_file(path) as f:
        size, offset, index = os.fstat(f.fileno()).st_size, 0, 0
        while True:
            header = f.read(HEADER_BYTES)
            if not header:
                return
            length = _parse_header(path, header, index, offset, size)
            payload, footer = f.read(length), f.read(FOOTER_BYTES)
            if len(payload) < length or len(footer) < FOOTER_BYTES:  # the file shrank while being read
                raise RecordError(path, f"truncated record file (record {index} at byte {offset} ends past the end)")
            if masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
                raise RecordError(path, f"record {index}: corrupt (data CRC mismatch, record at byte {offset})")
            yield payload
            offset += HEADER_BYTES + length + FOOTER_BYTES
            index += 1
