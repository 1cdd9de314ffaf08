"""TensorBoard event files without TensorFlow, read back by TensorFlow's own reader."""
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tensorflow.core.util import event_pb2

from tf3dstylegan.io import encode_png, events
from tf3dstylegan.io.events import EventFileWriter, encode_event, image_value, png_shape, scalar_value
from tf3dstylegan.training.stats import StatsWriter


def read_events(folder):
    """Every Event of the one events file in `folder`."""
    (path,) = folder.glob("events.out.tfevents.*")
    return list(tf.compat.v1.train.summary_iterator(str(path)))


def image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_events_are_the_bytes_protobuf_writes():
    png = encode_png(image((3, 5)))
    ours = encode_event(1234.5, 7, values=[scalar_value("a/b", 0.25), scalar_value("zero", 0.0),
                                           scalar_value("neg", -0.0), image_value("img", png)])
    theirs = event_pb2.Event(wall_time=1234.5, step=7)
    theirs.summary.value.add(tag="a/b", simple_value=0.25)
    theirs.summary.value.add(tag="zero", simple_value=0.0)
    theirs.summary.value.add(tag="neg", simple_value=-0.0)
    theirs.summary.value.add(tag="img", image=summary_pb2.Summary.Image(height=3, width=5, colorspace=1,
                                                                       encoded_image_string=png))
    assert ours == theirs.SerializeToString()
    assert encode_event(9.0, file_version="brain.Event:2") == \
        event_pb2.Event(wall_time=9.0, file_version="brain.Event:2").SerializeToString()


def test_scalars_and_images_read_back_by_tensorflow(tmp_path):
    gray, rgb = image((20, 30)), image((8, 6, 3), seed=1)
    writer = EventFileWriter(tmp_path)
    writer.add_scalars({"loss/G": 1.5, "count": 3, "huge": 1e300}, step=64)
    writer.add_image("fakes", encode_png(gray), step=64)
    writer.add_scalars({"loss/G": -2.0}, step=128)
    writer.add_image("color", encode_png(rgb), step=128)
    writer.close()
    events = read_events(tmp_path)
    assert events[0].file_version == "brain.Event:2" and events[0].wall_time > 0
    values = [(e.step, v.tag, v.simple_value) for e in events[1:] for v in e.summary.value
              if v.HasField("simple_value")]
    assert values == [(64, "loss/G", 1.5), (64, "count", 3.0), (64, "huge", np.inf), (128, "loss/G", -2.0)]
    images = [(e.step, v.tag, v.image) for e in events for v in e.summary.value if v.HasField("image")]
    assert [(step, tag, i.height, i.width, i.colorspace) for step, tag, i in images] == \
        [(64, "fakes", 20, 30, 1), (128, "color", 8, 6, 3)]
    np.testing.assert_array_equal(tf.io.decode_png(images[0][2].encoded_image_string).numpy()[..., 0], gray)
    np.testing.assert_array_equal(tf.io.decode_png(images[1][2].encoded_image_string).numpy(), rgb)


def test_two_writers_in_one_folder_write_two_files(tmp_path):
    EventFileWriter(tmp_path).close()
    EventFileWriter(tmp_path).close()
    assert len(list(tmp_path.glob("events.out.tfevents.*.v2"))) == 2


def test_stats_writer_puts_scalars_and_the_preview_in_tensorboard(tmp_path):
    writer = StatsWriter(tmp_path)
    record = {"tick": 2, "step": 10, "nimg": 640, "kimg": 0.64, "loss/G": 0.5, "aug/p": 0.125, "note": "text"}
    writer.write(record)
    montage = image((40, 64))
    writer.write_image("previews/fakes", encode_png(montage), 640)
    assert json.loads((tmp_path / "stats.jsonl").read_text())["loss/G"] == 0.5
    events = read_events(tmp_path)
    scalars = {v.tag: (e.step, v.simple_value) for e in events for v in e.summary.value if v.HasField("simple_value")}
    assert scalars.keys() == {"kimg", "loss/G", "aug/p"}  # not tick, step, nimg, timestamp or text
    assert scalars["loss/G"] == (640, 0.5) and scalars["kimg"] == (640, pytest.approx(0.64))
    (preview,) = [(e.step, v) for e in events for v in e.summary.value if v.HasField("image")]
    assert preview[0] == 640 and preview[1].tag == "previews/fakes"
    np.testing.assert_array_equal(tf.io.decode_png(preview[1].image.encoded_image_string).numpy()[..., 0], montage)


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    writer = EventFileWriter(tmp_path)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events, "write_record", full_disk)
    with pytest.raises(OSError) as err:
        writer.add_scalars({"a": 1.0}, 1)
    assert str(err.value) == f"{writer.path}: cannot write (No space left on device)"
    with pytest.raises(OSError, match=f"{tmp_path / 'absent'}/events.out.tfevents.*: cannot write"):
        EventFileWriter(tmp_path / "absent")


def test_png_shape_refuses_what_is_not_a_png():
    assert png_shape(encode_png(image((4, 9, 3)))) == (4, 9, 3)
    with pytest.raises(ValueError, match="not a PNG"):
        png_shape(b"GIF89a" + b"\0" * 30)
