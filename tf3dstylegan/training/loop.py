"""`train(config, data, outdir, **options)`: the training loop of 3D-StyleGAN with the paper's lazy
regularisation, on any Keras backend: the backend's Trainer (`tf3dstylegan.backend.<backend>.trainer`: strategies,
input pipeline, step, checkpoints) does the work, this loop the ticks, statistics, snapshots and stops.

Per-step statistics stay on the device (Keras `Mean` metrics) and are read once per tick, so steps are
dispatched without waiting for the host. A tick (progress line, stats, checkpoint) comes after the first step,
then every `tick_kimg` (or a tenth of the run if shorter) and at the end. A non-finite loss stops the run at
the tick without checkpointing it; SIGINT and SIGTERM finish the current step, write a checkpoint and stop.
"""
import contextlib
import json
import signal
import threading
import time

import importlib

import numpy as np

from tf3dstylegan import backend, usage
from tf3dstylegan.config import Config, load_config
from tf3dstylegan.data.preflight import data_notes
from tf3dstylegan.data.provenance import recorded_normalization
from tf3dstylegan.data.records import dataset_info
from tf3dstylegan.io import (encode_png, on_terminal, preview_grid, progress_bar, write_bytes_atomic,
                             write_json_atomic)
from tf3dstylegan.sampling import sampler
from tf3dstylegan.training import stats
from tf3dstylegan.training.diversity import DiversityProbe
from tf3dstylegan.training.job import AUGMENT_OPTIONS, check_network_file, job_identity
from tf3dstylegan.training.options import TrainingOptions
from tf3dstylegan.training.runs import RunLock, resolve_run

PREVIEW_GRID = (4, 2)  # columns, rows of the fixed preview latents


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM: the run stopped after writing a checkpoint."""


def train(config, data=None, outdir="runs", *, metrics=None, log=print, **options):
    """Train G and D; returns the run folder.

    config: a Config or preset name. data: a TFRecords folder, None for the demo dataset, or a function of the
    backend's trainer (TensorFlow: (input_context, start_step) -> tf.data.Dataset of per-replica batches; JAX:
    start_step -> iterator of NumPy batches), batches [b, X, Y, Z, C] in [-1, 1]. metrics: None or a function
    G_ema -> {name: float}, evaluated at each snapshot. options: fields of TrainingOptions (each with its help).
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    opts = TrainingOptions(**options)
    if data is None:
        from tf3dstylegan.data import demo_dataset
        data = demo_dataset(voxel_size=cfg.voxel_size, conditional=opts.labels is True)
    info = None if callable(data) else dataset_info(data)  # a records folder: read once, for aug auto and notes
    cfg, label_table = _conditioning(cfg, data, opts)
    opts = opts.resolved(cfg, None if info is None else info.num_volumes)  # after the label_size is known
    cfg = cfg.replace(batch_size=opts.batch)  # one truth: the batch actually used
    if info is not None:
        cfg = cfg.replace(data_normalize=recorded_normalization(data) or cfg.data_normalize)
        for line in data_notes(info, opts.batch):
            log(line)
    job = job_identity(cfg, data, opts)
    run_dir, resume_from = resolve_run(outdir, cfg.name, opts.resume, job, log)
    if resume_from is not None and resume_from.is_file():
        check_network_file(resume_from, cfg)  # what differs, before anything is built or written
    trainer = make_trainer(cfg, opts, label_table, run_dir / "checkpoints")
    with RunLock(run_dir) if trainer.chief else contextlib.nullcontext():
        if resume_from is not None and resume_from.is_dir():
            found = trainer.restore(resume_from, log)
            log(f"resuming from step {trainer.counters[0]} ({found})")
        elif resume_from is not None:
            trainer.initialize_from(resume_from, log)
            log(f"initialised G, D and G_ema from {resume_from}")
        batches = trainer.batches(data, trainer.counters[0], info)
        if trainer.chief:  # the lock made the run folder
            write_json_atomic(run_dir / "training_options.json", options_record(cfg, opts, trainer, resume_from, job))
            log(f"run folder {run_dir} ({trainer.description}, batch {opts.batch}, {opts.precision})")
        diversity = DiversityProbe(cfg, data, opts.seed, trainer.label_table) if trainer.chief else None
        with _StopRequests() as stop:
            _loop(trainer, batches, run_dir, opts, metrics, diversity, log, stop)
    return run_dir


class _StopRequests:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""

    def __enter__(self):
        self.requested, self._previous = None, {}
        if threading.current_thread() is threading.main_thread():  # signal handlers: main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def make_trainer(cfg, opts, label_table, checkpoint_dir):
    """The Trainer of this process's Keras backend (tf3dstylegan.backend.<backend>.trainer)."""
    module = importlib.import_module(f"tf3dstylegan.backend.{backend.name()}.trainer")
    return module.Trainer(cfg, opts, label_table, checkpoint_dir)


def options_record(cfg, opts, trainer, resume_from, job):
    """What training_options.json holds: every TrainingOptions field (augmentation options only where the mode uses
    them), the config (with the batch used), the backend and devices, and the run's job (training.job)."""
    record = {name: value for name, value in opts.record().items() if name not in AUGMENT_OPTIONS}
    record.update(job["augment"], labels=cfg.label_size > 0, resume=str(resume_from) if resume_from else None,
                  strategy=opts.strategy if isinstance(opts.strategy, str) else trainer.description)
    return dict(config=cfg.to_dict(), data=job["data"], backend=backend.name(), devices=trainer.description,
                num_replicas=trainer.num_replicas, **record, job=job)


def _conditioning(cfg, data, opts):
    """(the config with the dataset's label_size and encoding, the dataset's labels [N, L]) for a records folder
    with labels (unless opts.labels is False); (cfg, None) for unconditional training."""
    if callable(data) or opts.labels is False:
        if cfg.label_size and not callable(data):
            raise ValueError(f"config {cfg.name!r} is conditional (label_size {cfg.label_size}): train on labels")
        return cfg, None
    from tf3dstylegan.data.labels import read_labels
    encoding, labels = read_labels(data)
    if labels is None:
        if opts.labels or cfg.label_size:
            raise ValueError(f"--labels: {data} has no labels (labels.json or *-rxx.labels); make them with "
                             f"{usage.command('dataset')} create-from-images3d --labels TABLE")
        return cfg, None
    if cfg.label_size and cfg.label_size != labels.shape[1]:
        raise ValueError(f"{data}: labels have {labels.shape[1]} values, config {cfg.name!r} label_size "
                         f"{cfg.label_size}")
    encoded = json.dumps(encoding.to_json()) if encoding is not None else ""
    return cfg.replace(label_size=int(labels.shape[1]), label_encoding=encoded), labels.astype(np.float32)


def _loop(trainer, batches, run_dir, opts, metrics, diversity, log, stop):
    cfg, batch, total_nimg, chief = trainer.cfg, opts.batch, int(round(1000 * opts.kimg)), trainer.chief
    tick_nimg = min(cfg.tick_kimg * 1000, total_nimg / 10)  # short runs still report (and save) ten times
    stats_writer = stats.StatsWriter(run_dir) if chief else None
    grid_z = np.random.RandomState(opts.seed).randn(PREVIEW_GRID[0] * PREVIEW_GRID[1], cfg.latent_size)
    table = trainer.label_table  # conditional: the previews cycle through the dataset's first labels
    grid_labels = None if table is None else np.resize(table, (len(grid_z), table.shape[1]))
    sample = sampler(trainer.G_ema) if chief else None  # compiled once: the previews and the diversity probe
    means = stats.DeviceMeans()
    step, nimg, seconds_at_start = trainer.counters
    tick, tick_start_nimg, tick_start_time = 0, nimg, time.time()
    start_time = time.time()
    rate_from = None  # (time, nimg) at the end of the first tick, whose step also compiles: the ETA's origin
    progress = _progress_bar(tick_nimg) if chief and opts.progress and on_terminal() else None
    done = nimg >= total_nimg
    while not done:
        means.update(trainer.step(next(batches), step))
        step, nimg = step + 1, nimg + batch
        done = nimg >= total_nimg
        if progress is not None:
            progress.update(min(nimg - tick_start_nimg, tick_nimg))
        if not (tick == 0 or done or stop.requested or nimg >= tick_start_nimg + tick_nimg):
            continue
        values = means.read_and_reset()
        bad = sorted(k for k, v in values.items() if not np.isfinite(v))
        if bad:
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} in the tick ending at step {step}; stopping (no checkpoint of this "
                f"tick is written: rerunning resumes from the last good one). Check the data for NaN/Inf "
                f"({usage.command('dataset')} info --verify), lower the learning rate or use --precision float32")
        now = time.time()
        trainer.set_counters(step, nimg, seconds_at_start + now - start_time)
        sec_per_kimg = (now - tick_start_time) / max(nimg - tick_start_nimg, 1) * 1000
        record = dict(tick=tick, step=step, nimg=nimg, kimg=nimg / 1000, time=seconds_at_start + now - start_time,
                      sec_per_tick=now - tick_start_time, sec_per_kimg=sec_per_kimg,
                      volumes_per_sec=1000 / sec_per_kimg, eta=_eta(rate_from, now, nimg, total_nimg),
                      memory_mb=stats.memory_mb(), **values)
        trainer.sync()
        trainer.save(step)
        if chief and (tick % opts.snap == 0 or done or stop.requested):
            record.update(_snapshot(trainer.G_ema, sample, run_dir, grid_z, grid_labels, nimg, metrics,
                                    stats_writer))
            record.update(diversity(sample))
        if chief:
            stats_writer.write(record)
            log(stats.progress_line(record))
        if stop.requested:
            raise TrainingInterrupted(f"{stop.requested}: stopped at step {step} after writing its checkpoint; "
                                      f"rerun the same command to resume")
        tick, tick_start_nimg, tick_start_time = tick + 1, nimg, time.time()
        rate_from = rate_from or (tick_start_time, nimg)
        if progress is not None and not done:
            progress = _progress_bar(tick_nimg)
    if chief:
        log(f"done: {nimg / 1000:.3f} kimg in {run_dir}")


def _eta(rate_from, now, nimg, total_nimg):
    """Seconds left at the pace measured since the end of the first tick (None before there is one)."""
    if rate_from is None or nimg <= rate_from[1]:
        return None
    return (total_nimg - nimg) * (now - rate_from[0]) / (nimg - rate_from[1])


def _progress_bar(tick_nimg):
    """Volumes done in the current tick, redrawn live (terminals only: a log file gets the tick lines alone)."""
    return progress_bar(tick_nimg, unit_name="volume")


def snapshot_name(nimg):
    """'000001.250' for 1250 volumes: kimg with three decimals, so no two snapshots of a run collide."""
    return f"{nimg // 1000:06d}.{nimg % 1000:03d}"


def _snapshot(G_ema, sample, run_dir, grid_z, grid_labels, nimg, metrics, stats_writer):
    """Export G_ema as .keras, write the preview PNG (sample: G_ema's sampler, of grid_z, with grid_labels for
    conditional networks) into the run folder and TensorBoard (`previews/fakes`); returns metric values."""
    from tf3dstylegan.io import atomic_path
    name = snapshot_name(nimg)
    rows = np.split(np.arange(len(grid_z)), PREVIEW_GRID[1])
    fakes = np.concatenate([sample(grid_z[i], None if grid_labels is None else grid_labels[i]) for i in rows])
    try:
        with atomic_path(run_dir / f"network-snapshot-{name}.keras") as tmp:
            G_ema.save(tmp)
        png = encode_png(preview_grid(fakes, PREVIEW_GRID[0]))
        write_bytes_atomic(run_dir / f"fakes{name}.png", png)
        stats_writer.write_image("previews/fakes", png, nimg)
    except OSError as err:
        raise OSError(f"{run_dir}: cannot write the snapshot {name} ({err.strerror or err}); the checkpoint of "
                      f"this tick is kept") from None
    return {f"metrics/{k}": float(v) for k, v in (metrics(G_ema) if metrics else {}).items()}
