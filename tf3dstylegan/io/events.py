"""TensorBoard event files without TensorFlow: scalars and PNG images.

An events file is TFRecord-framed (io.tfrecord) serialized `Event` messages (tensorflow/core/util/event.proto):
first one with the file version, then one per write with wall_time, step and a Summary of values
(tensorflow/core/framework/summary.proto): `simple_value` scalars and `image` PNGs, which TensorBoard shows in
its scalar and image dashboards. Fields are written as protobuf writes them (defaults left out, oneof members kept).
"""
import itertools
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from tf3dstylegan.io.protobuf import FIXED32, bytes_field, double_field, key, varint_field
from tf3dstylegan.io.tfrecord import write_record

FILE_VERSION = "brain.Event:2"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLORSPACES = {0: 1, 4: 2, 2: 3, 6: 4, 3: 3}  # PNG colour type -> Summary.Image colorspace (palette as RGB)
_FILE_COUNTER = itertools.count()


def encode_event(wall_time, step=0, file_version=None, values=()) -> bytes:
    """A serialized Event (wall_time 1, step 2, file_version 3, summary 5) of serialized Summary.Values."""
    parts = [double_field(1, wall_time) if wall_time else b"", varint_field(2, step) if step else b""]
    if file_version is not None:
        parts.append(bytes_field(3, file_version.encode("utf-8")))
    if values:
        parts.append(bytes_field(5, b"".join(bytes_field(1, value) for value in values)))  # Summary.value 1
    return b"".join(parts)


def scalar_value(tag, value) -> bytes:
    """A Summary.Value (tag 1) of a float32 simple_value (2, part of a oneof: written even when 0)."""
    with np.errstate(over="ignore"):
        bits = np.float32(value).tobytes()  # beyond float32: +-inf, as TensorFlow's cast
    return bytes_field(1, tag.encode("utf-8")) + key(2, FIXED32) + bits


def png_shape(png):
    """(height, width, colorspace) of PNG bytes, from their header; ValueError if they are not a PNG."""
    if len(png) < 26 or png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR" or png[25] not in PNG_COLORSPACES:
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return height, width, PNG_COLORSPACES[png[25]]


def image_value(tag, png) -> bytes:
    """A Summary.Value (tag 1) of an image (4): Image{height 1, width 2, colorspace 3, encoded_image_string 4}."""
    height, width, colorspace = png_shape(png)
    image = varint_field(1, height) + varint_field(2, width) + varint_field(3, colorspace) + bytes_field(4, png)
    return bytes_field(1, tag.encode("utf-8")) + bytes_field(4, image)


class EventFileWriter:
    """Writes `events.out.tfevents.<time>.<host>.<pid>.<n>.v2` in `logdir` (a new file per writer, as
    tf.summary.create_file_writer names it); every write is flushed. OSError naming the file if a write fails."""

    def __init__(self, logdir):
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_FILE_COUNTER)}.v2")
        self.path = Path(logdir) / name
        try:
            self._file = open(self.path, "xb")  # pylint: disable=consider-using-with; closed by close()
        except OSError as err:
            raise OSError(f"{self.path}: cannot write ({err.strerror or err})") from None
        self._write(encode_event(time.time(), file_version=FILE_VERSION))

    def _write(self, event):
        try:
            write_record(self._file, event)
            self._file.flush()
        except OSError as err:  # a full disk: name the file
            raise OSError(f"{self.path}: cannot write ({err.strerror or err})") from None

    def add_scalars(self, values, step):
        """One event at `step` with a float32 scalar per {tag: value}."""
        self._write(encode_event(time.time(), step, values=[scalar_value(t, v) for t, v in values.items()]))

    def add_image(self, tag, png, step):
        """One event at `step` with the PNG image `png` (bytes) under `tag`."""
        self._write(encode_event(time.time(), step, values=[image_value(tag, png)]))

    def close(self):
        self._file.close()
