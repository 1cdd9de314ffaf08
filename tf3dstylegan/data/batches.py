"""NumPy input pipeline over a records folder, without TensorFlow (the JAX training path): the batches of
data.pipeline.make_dataset, float32 [B, X, Y, Z, C] in [-1, 1] (and labels), read ahead by a background thread.

Records are read by position (the index of their offsets is built from the record headers), so every epoch is a
uniform shuffle of the whole dataset (tf.data shuffles within a window), and several processes read disjoint
shards: volume i (label row i) goes to process i % process_count.
"""
import concurrent.futures
import math
import os
import queue
import threading

import numpy as np

from tf3dstylegan.data.example import decode_example
from tf3dstylegan.data.labels import read_labels
from tf3dstylegan.data.records import dataset_info
from tf3dstylegan.data.sampling import DEFAULT_CACHE_MB, MIRROR_STREAM, SHUFFLE_STREAM, derived_seed
from tf3dstylegan.data.volumes import DataError
from tf3dstylegan.io.protobuf import WireError
from tf3dstylegan.io.tfrecord import RecordError, open_record_file, read_payload, record_spans

DEFAULT_READ_AHEAD = 3  # batches prepared while the current one is used
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)  # threads reading and converting the volumes of a batch
_POLL_S = 0.1  # how often a blocked reader thread checks whether it should stop


class VolumeReader:
    """The volumes of one process's shard of a records folder: read, checked and converted by position, kept in
    memory when they fit cache_mb (info: the folder's DatasetInfo when the caller has read it). Thread-safe reads
    (positional file reads; each cache slot is written once before it is marked filled)."""

    def __init__(self, path, process_index=0, process_count=1, cache_mb=DEFAULT_CACHE_MB, with_labels=False,
                 info=None):
        info = info or dataset_info(path)
        self.path, self.files = path, info.files
        self.stored_shape = (info.num_channels, *info.img_shape)  # [C, X, Y, Z]
        self.volume_shape = (*info.img_shape, info.num_channels)  # [X, Y, Z, C]
        self.payload_bytes = 4 * math.prod(self.stored_shape)
        index = sorted((j * len(info.files) + s, s, j, offset, length)  # label row j * S + s, as records are written
                       for s, file in enumerate(info.files)
                       for j, (offset, length) in enumerate(_checked(list, path, record_spans(file))))
        if len(index) < process_count:
            raise DataError(path, f"holds {len(index)} volume(s), fewer than the {process_count} processes")
        index = index[process_index::process_count]
        self.rows, self._file_of, self._record_of, self._offsets, self._lengths = (list(c) for c in zip(*index))
        self.labels = None
        if with_labels:
            _, labels = read_labels(path)
            if labels is None:
                raise DataError(path, "has no labels (*.labels); create it with dataset_tool.py --labels TABLE")
            if max(self.rows) >= len(labels):
                raise DataError(path, "its shard files do not hold the volumes round-robin, as the labels expect")
            self.labels = labels[self.rows].astype(np.float32)  # [n, L]
        self._open = [_checked(open_record_file, path, file) for file in self.files]
        fits = len(self) * self.payload_bytes <= cache_mb << 20
        self._cache = np.empty((len(self), *self.volume_shape), np.float32) if fits else None
        self._filled = np.zeros(len(self), bool)

    def __len__(self):
        return len(self.rows)

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def fill(self, k):
        """Read volume k into the memory cache unless it is there (no two threads may fill the same k at once)."""
        if not self._filled[k]:
            self._decode(k, self._cache[k], False)
            self._filled[k] = True

    def read(self, k, out, flip=False):
        """Write volume k of the shard into `out` ([X, Y, Z, C] float32) in [-1, 1], flipped along X if flip."""
        if self._cache is None:
            self._decode(k, out, flip)
        else:
            self.fill(k)
            np.copyto(out, self._cache[k][::-1] if flip else self._cache[k])

    def _decode(self, k, out, flip):
        file, record = self.files[self._file_of[k]], self._record_of[k]
        payload = _checked(read_payload, self.path, self._open[self._file_of[k]].fileno(), file, record,
                           self._offsets[k], self._lengths[k])
        try:
            features = decode_example(payload)
        except WireError as err:
            raise DataError(file, f"record {record}: not a tf.train.Example ({err}); find it with: "
                                  f"dataset_tool.py info {self.path} --verify") from None
        shape, data = features.get("shape"), features.get("data")
        shape = list(shape.values) if shape is not None and shape.kind == "int64" else "(no int64 list)"
        values = data.values if data is not None and data.kind == "bytes" else []
        if shape != list(self.stored_shape) or len(values) != 1 or len(values[0]) != self.payload_bytes:
            raise DataError(file, f"record {record}: a record of shape {shape} with {sum(len(v) for v in values)} "
                                  f"payload bytes does not fit the dataset's {list(self.stored_shape)}; find it "
                                  f"with: dataset_tool.py info {self.path} --verify")
        volume = np.moveaxis(np.frombuffer(values[0], "<f4").reshape(self.stored_shape), 0, -1)  # [X, Y, Z, C]
        np.multiply(volume[::-1] if flip else volume, np.float32(2.0), out=out)
        out -= np.float32(1.0)  # [0, 1] -> [-1, 1], as data.pipeline.parse_volume

    def close(self):
        for f in self._open:
            f.close()


def _checked(function, path, *args):
    """function(*args), a RecordError turned into the DataError of the records folder's messages."""
    try:
        return function(*args)
    except RecordError as err:
        raise DataError(err.path, f"{err.problem}; find it with: dataset_tool.py info {path} --verify") from None


class Batches:
    """Iterator of float32 [B, X, Y, Z, C] batches in [-1, 1] of a records folder (with with_labels, of
    (volumes, labels float32 [B, L]) pairs); see make_batches. close() (or leaving `with`) stops its thread and
    closes the files; an iterator dropped without it keeps its (daemon) thread waiting until the process ends."""

    def __init__(self, reader, batch_size, seed, shuffle, repeat, mirror_augment, process_index, read_ahead,
                 workers):
        self.reader, self.batch_size = reader, batch_size
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="tf3dstylegan-read")
        self.element_shape = (batch_size, *reader.volume_shape)
        self._order = np.random.default_rng(derived_seed(seed, SHUFFLE_STREAM, process_index)) if shuffle else None
        self._coins = (np.random.default_rng(derived_seed(seed, MIRROR_STREAM, process_index)) if mirror_augment
                       else None)
        self._repeat = repeat
        self._queue, self._stop, self._finished = queue.Queue(maxsize=max(1, read_ahead)), threading.Event(), False
        self._thread = threading.Thread(target=self._produce, name="tf3dstylegan-batches", daemon=True)
        self._thread.start()

    def _positions(self):
        """Shard positions of one epoch after another (one epoch without repeat)."""
        while True:
            yield from (self._order.permutation(len(self.reader)) if self._order is not None
                        else range(len(self.reader)))
            if not self._repeat:
                return

    def _batches(self):
        positions = self._positions()
        while True:
            chosen = [k for _, k in zip(range(self.batch_size), positions)]
            if not chosen:
                return
            flips = self._coins.random(len(chosen)) < 0.5 if self._coins is not None else [False] * len(chosen)
            volumes = np.empty((len(chosen), *self.reader.volume_shape), np.float32)
            if self.reader.cached:  # each missing volume read once, then every slot copied
                list(self._pool.map(self.reader.fill, sorted(set(chosen))))
            list(self._pool.map(self.reader.read, chosen, volumes, flips))
            yield volumes if self.reader.labels is None else (volumes, self.reader.labels[chosen])

    def _produce(self):
        try:
            for batch in self._batches():
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as err:  # pylint: disable=broad-except; handed to the consumer
            self._put(("error", err))
        finally:
            self._pool.shutdown()
            self.reader.close()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "batch":
            return value
        self._finished = True
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self):
        """Stop the reader thread (it closes the files)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_batches(path, batch_size, *, seed=0, shuffle=True, repeat=True, mirror_augment=False, process_index=0,
                 process_count=1, cache_mb=DEFAULT_CACHE_MB, with_labels=False, read_ahead=DEFAULT_READ_AHEAD,
                 workers=DEFAULT_WORKERS, info=None) -> Batches:
    """Batches of a records folder as data.pipeline.make_dataset gives them, from NumPy.

    batch_size is the global batch: each of process_count processes yields batch_size / process_count volumes of
    its own shard. shuffle (a new uniform order each epoch) and mirror_augment (a coin per volume, its own
    stream) are deterministic for a seed (pass derived_seed(seed, start_step) when resuming). Batches are full
    when repeating. A shard of at most cache_mb is kept in memory after its first read. A background thread
    prepares read_ahead batches, `workers` threads reading their volumes. info: the folder's DatasetInfo when the
    caller has read it (records.dataset_info). Bad records raise DataError naming the file and record."""
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} is not in [0, {process_count})")
    reader = VolumeReader(path, process_index, process_count, cache_mb, with_labels, info)
    return Batches(reader, batch_size // process_count, seed, shuffle, repeat, mirror_augment, process_index,
                   read_ahead, workers)
