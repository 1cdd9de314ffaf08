"""Training statistics: per-tick averages, stats.jsonl, TensorBoard scalars and previews, the progress line."""
import json
import math
import resource
import time

import keras

from tf3dstylegan.io.events import EventFileWriter


class DeviceMeans:
    """Means of the per-step values over one tick, accumulated on the device (keras.metrics.Mean): `update` does
    not wait for the step to finish; `read_and_reset` reads them all once."""

    def __init__(self):
        self.metrics = {}

    def update(self, values):
        for key, value in values.items():
            if key not in self.metrics:
                self.metrics[key] = keras.metrics.Mean(name=key.replace("/", "_"))
            self.metrics[key].update_state(value)

    def read_and_reset(self):
        """{name: mean} of the values updated since the last read (a lazy regulariser's only in ticks it ran)."""
        means = {key: float(metric.result()) for key, metric in self.metrics.items() if float(metric.count) > 0}
        for metric in self.metrics.values():
            metric.reset_state()
        return means


def memory_mb():
    """Peak memory in MiB: of the first GPU when there is one (TensorFlow and JAX backends), else this process's
    peak resident size."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel; only on its backend
        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    elif keras.backend.backend() == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        device = jax.local_devices()[0]
        if device.platform == "gpu":
            return (device.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def format_duration(seconds):
    """e.g. 3725 -> '1h 02m 05s'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def progress_line(record):
    """One line per tick: tick, kimg, time, sec/tick, sec/kimg, ETA and the main losses."""
    parts = [f"tick {record['tick']:<4d}", f"kimg {record['kimg']:<8.3f}",
             f"time {format_duration(record['time']):<11s}", f"sec/tick {record['sec_per_tick']:<7.1f}",
             f"sec/kimg {record['sec_per_kimg']:<8.1f}", f"eta {format_duration(record['eta']):<11s}"]
    for key, label in (("loss/G", "G"), ("loss/D", "D"), ("loss/G_reg", "Greg"), ("loss/D_reg", "Dreg"),
                       ("pl_mean", "pl_mean"), ("aug/p", "p")):
        if key in record:
            parts.append(f"{label} {record[key]:.4f}")
    if "diversity/msssim_fakes" in record:  # a snapshot's diversity: generated pairs (real pairs)
        reals = record.get("diversity/msssim_reals")
        parts.append(f"msssim {record['diversity/msssim_fakes']:.4f}"
                     + (f" (reals {reals:.4f})" if reals is not None else ""))
    parts.append(f"mem {record['memory_mb']:.0f}MB")
    return "  ".join(parts)


class StatsWriter:
    """Appends one JSON line per tick to stats.jsonl and writes TensorBoard scalars (and snapshot previews) to an
    events file in the run folder, at step = nimg (volumes shown)."""

    def __init__(self, run_dir):
        self.jsonl = run_dir / "stats.jsonl"
        self.tensorboard = EventFileWriter(run_dir)

    def write(self, record):
        record = dict(record, timestamp=time.time())
        try:
            with open(self.jsonl, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:  # a full disk: name the file
            raise OSError(f"{self.jsonl}: cannot write ({err.strerror or err})") from None
        self.tensorboard.add_scalars({key: value for key, value in record.items() if isinstance(value, (int, float))
                                      and key not in ("tick", "step", "nimg", "timestamp")}, record["nimg"])

    def write_image(self, tag, png, step):
        """A PNG image (bytes, e.g. the snapshot's preview montage) in TensorBoard at `step` (nimg)."""
        self.tensorboard.add_image(tag, png, step)
