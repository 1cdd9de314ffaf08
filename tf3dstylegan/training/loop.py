"""The training loop: `train(config, data, outdir, ...)` (spec §5 with the paper's lazy regularisation)."""
import json
import math
import os
import re
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tf3dstylegan.config import Config, load_config
from tf3dstylegan.training import distribute, preview, stats
from tf3dstylegan.training.checkpoint import CheckpointStore, latest_checkpoint, variables_node
from tf3dstylegan.training.step import TrainStep, make_optimizer

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PREVIEW_GRID = (4, 2)  # columns, rows of the fixed preview latents
_RUN = re.compile(r"^(\d{5})-(.+)$")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


def train(config, data=None, outdir="runs", *, kimg=None, batch=None, strategy="auto", gpus=None,
          resume="auto", precision="float32", jit=False, seed=0, snap=1, metrics=None, keep_checkpoints=3,
          gradient_checkpointing=False, log=print):
    """Train G and D; returns the run folder.

    config: a Config or preset name. data: a TFRecords folder, None for the demo dataset, or a function
    (input_context, start_step) -> tf.data.Dataset of per-replica batches [b, X, Y, Z, C] in [-1, 1].
    kimg: thousands of real volumes to show D (default cfg.total_kimg). batch: global batch (default
    cfg.batch_size). strategy: a tf.distribute.Strategy or a name for `distribute.make_strategy`.
    resume: "auto" (latest run of this config in outdir), None/"none", a run folder, or a network file
    (.pkl/.keras) that initialises G, D and G_ema. snap: ticks between .keras/preview snapshots.
    metrics: None or a function G_ema -> {name: float}, evaluated at each snapshot.
    gradient_checkpointing: recompute G and D block activations in the backward pass (less memory).
    A tick (progress line, stats, checkpoint) comes after the first step, then every cfg.tick_kimg or every
    tenth of the run if that is shorter, and at the end.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    if not isinstance(strategy, tf.distribute.Strategy):
        strategy = distribute.make_strategy(strategy, gpus=gpus)
    chief = distribute.is_chief(strategy)
    batch = int(batch or cfg.batch_size)
    total_nimg = int(round(1000 * (cfg.total_kimg if kimg is None else kimg)))
    run_dir, resume_from = resolve_run(outdir, cfg.name, resume)
    data_fn = _data_function(data, cfg, batch, seed)

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        state = build_state(cfg, strategy, batch, seed, precision, jit, gradient_checkpointing)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    store = CheckpointStore(run_dir / "checkpoints", keep=keep_checkpoints, **state.trackables())
    if resume_from is not None and resume_from.is_dir():
        try:
            store.restore(resume_from)
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            problem = str(err).strip().splitlines()[0]
            raise ValueError(f"{resume_from}: does not fit config {cfg.name!r} and batch {batch} ({problem}); "
                             f"start a new run with resume='none'") from None
        log(f"resuming from step {int(state.step.numpy())} ({resume_from})")
    elif resume_from is not None:
        load_weights(resume_from, state, log)
        log(f"initialised G, D and G_ema from {resume_from}")
    start_step = int(state.step.numpy())
    dataset = strategy.distribute_datasets_from_function(lambda ctx: data_fn(ctx, start_step))
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_options(run_dir, cfg, data, total_nimg, batch, strategy, precision, jit, seed, snap, resume_from)
        log(f"run folder {run_dir} ({distribute.describe(strategy)}, batch {batch}, {precision})")
    _loop(state, iter(dataset), store, run_dir, chief, total_nimg, snap, metrics, log)
    return run_dir


def resolve_run(outdir, name, resume):
    """(run folder, checkpoint folder or network file or None) for a resume setting."""
    outdir = Path(outdir)
    if resume in (None, "none", "") or (resume == "auto" and not _runs(outdir, name)):
        return _next_run(outdir, name), None
    if resume == "auto":
        for run in _runs(outdir, name):
            found = latest_checkpoint(run / "checkpoints")
            if found is not None:
                return run, found
        return _next_run(outdir, name), None
    path = Path(resume)
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints")
        if found is None:
            raise ValueError(f"{path}: no complete checkpoint in this run folder")
        return path, found
    if not path.is_file():
        raise ValueError(f"{path}: no such run folder or network file")
    return _next_run(outdir, name), path


def _runs(outdir, name):
    """Run folders of this config, newest first."""
    if not outdir.is_dir():
        return []
    runs = [p for p in outdir.iterdir() if p.is_dir() and _RUN.match(p.name) and _RUN.match(p.name).group(2) == name]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def _next_run(outdir, name):
    ids = [int(_RUN.match(p.name).group(1)) for p in outdir.iterdir() if _RUN.match(p.name)] if outdir.is_dir() else []
    return outdir / f"{max(ids, default=-1) + 1:05d}-{name}"


def _data_function(data, cfg, batch, seed):
    """input_context, start_step -> per-replica dataset, checking the volume shape against the config."""
    if data is None:
        from tf3dstylegan.data import demo_dataset
        data = demo_dataset(voxel_size=cfg.voxel_size)
    if callable(data):
        make = data
    else:
        from tf3dstylegan.data import make_dataset
        path = Path(data)

        def make(ctx, start_step):
            return make_dataset(path, batch, seed=seed + start_step, shuffle=True,
                                repeat=True, mirror_augment=cfg.mirror_augment, input_context=ctx)
    expected = (*cfg.img_shape, cfg.num_channels)

    def checked(ctx, start_step):
        dataset = make(ctx, start_step)
        shape = tuple(dataset.element_spec.shape[1:])
        if shape != expected:
            raise ValueError(f"{data}: volumes are {shape} but config {cfg.name!r} expects {expected}")
        return dataset
    return checked


class _State:
    """Networks, optimizers, counters and the step function of one run."""

    def __init__(self, **items):
        self.__dict__.update(items)

    def trackables(self):
        nodes = {name: variables_node(getattr(self, name).variables) for name in ("G", "D", "G_ema", "g_opt", "d_opt")}
        return dict(nodes, step=self.step, nimg=self.nimg, seconds=self.seconds, pl_mean=self.pl_mean, rng=self.rng)


def build_state(cfg, strategy, batch, seed, precision, jit, gradient_checkpointing=False):
    from tf3dstylegan.networks import build_discriminator, build_generator
    rng = tf.random.Generator.from_seed(seed)  # outside the scope: identical on every worker
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        G = build_generator(cfg, gradient_checkpointing=gradient_checkpointing)
        D = build_discriminator(cfg, gradient_checkpointing=gradient_checkpointing)
        G_ema = build_generator(cfg)
        for ema, var in zip(G_ema.variables, G.variables):
            ema.assign(var)
        g_opt = make_optimizer(cfg.g_lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, cfg.g_reg_interval,
                               precision)
        d_opt = make_optimizer(cfg.d_lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, cfg.d_reg_interval,
                               precision)
        g_opt.build(G.trainable_variables)
        d_opt.build(D.trainable_variables)
        pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean",
                              synchronization=tf.VariableSynchronization.ON_WRITE,
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        nimg = tf.Variable(0, dtype=tf.int64, trainable=False, name="nimg")
        seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
    train_step = TrainStep(cfg, strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean, batch, jit=jit)
    return _State(cfg=cfg, strategy=strategy, batch=batch, seed=seed, G=G, D=D, G_ema=G_ema, g_opt=g_opt,
                  d_opt=d_opt, pl_mean=pl_mean, step=step, nimg=nimg, seconds=seconds, rng=rng,
                  train_step=train_step)


def load_weights(path, state, log=print):
    """Copy G, D and G_ema from a network file (legacy .pkl or .keras) into the new networks."""
    from tf3dstylegan import load_network
    loaded = load_network(path)
    for name in ("G", "D", "G_ema"):
        source, target = getattr(loaded, name), getattr(state, name)
        if source is None:
            log(f"{path} holds no {name}: {name} starts from random weights")
            continue
        if [tuple(v.shape) for v in source.variables] != [tuple(v.shape) for v in target.variables]:
            raise ValueError(f"{path}: {name} does not match config {state.cfg.name!r} (different variable shapes)")
        for dst, src in zip(target.variables, source.variables):
            dst.assign(src)


def load_run_networks(run_dir):
    """LoadedNetworks (G, D, G_ema, config) from the latest checkpoint of a training run folder."""
    from tf3dstylegan.legacy import LoadedNetworks
    from tf3dstylegan.networks import build_discriminator, build_generator
    run_dir = Path(run_dir)
    options = run_dir / "training_options.json"
    if not options.is_file():
        raise ValueError(f"{run_dir}: not a training run folder (no training_options.json)")
    cfg = load_config(json.loads(options.read_text())["config"])
    found = latest_checkpoint(run_dir / "checkpoints")
    if found is None:
        raise ValueError(f"{run_dir}: no complete checkpoint in this run folder")
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    nodes = {name: variables_node(model.variables) for name, model in (("G", G), ("D", D), ("G_ema", G_ema))}
    CheckpointStore(run_dir / "checkpoints", **nodes).restore(found)
    return LoadedNetworks(G=G, D=D, G_ema=G_ema, config=cfg, source=str(found))


def _write_options(run_dir, cfg, data, total_nimg, batch, strategy, precision, jit, seed, snap, resume_from):
    options = dict(config=cfg.to_dict(), data=None if callable(data) else (str(data) if data else "demo"),
                   kimg=total_nimg / 1000, batch=batch, strategy=distribute.describe(strategy),
                   num_replicas=strategy.num_replicas_in_sync, precision=precision, jit=jit, seed=seed,
                   snap=snap, resume=str(resume_from) if resume_from else None)
    tmp = run_dir / "training_options.json.tmp"
    tmp.write_text(json.dumps(options, indent=2) + "\n")
    os.replace(tmp, run_dir / "training_options.json")


def _loop(state, iterator, store, run_dir, chief, total_nimg, snap, metrics, log):
    cfg, batch = state.cfg, state.batch
    tick_nimg = min(cfg.tick_kimg * 1000, total_nimg / 10)  # short runs still report (and save) ten times
    writer = stats.StatsWriter(run_dir) if chief else None
    grid_z = np.random.RandomState(state.seed).randn(PREVIEW_GRID[0] * PREVIEW_GRID[1], state.G.z_dim)
    tick_stats, tick, done = stats.TickStats(), 0, int(state.nimg.numpy()) >= total_nimg
    tick_start_nimg, tick_start_time = int(state.nimg.numpy()), time.time()
    seconds_at_start = float(state.seconds.numpy())
    start_time = time.time()
    while not done:
        step = int(state.step.numpy())
        values = {k: float(v) for k, v in state.train_step(next(iterator), step).items()}
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} at step {step}; stopping. The last good checkpoint is in "
                f"{run_dir / 'checkpoints'} (lower the learning rate or use --precision float32)")
        tick_stats.add(values)
        state.step.assign_add(1)
        state.nimg.assign_add(batch)
        nimg = int(state.nimg.numpy())
        done = nimg >= total_nimg
        if not (tick == 0 or done or nimg >= tick_start_nimg + tick_nimg):
            continue
        now = time.time()
        state.seconds.assign(seconds_at_start + now - start_time)
        sec_per_kimg = (now - tick_start_time) / max(nimg - tick_start_nimg, 1) * 1000
        record = dict(tick=tick, step=step + 1, nimg=nimg, kimg=nimg / 1000, time=float(state.seconds.numpy()),
                      sec_per_tick=now - tick_start_time, sec_per_kimg=sec_per_kimg,
                      volumes_per_sec=1000 / sec_per_kimg, eta=(total_nimg - nimg) / 1000 * sec_per_kimg,
                      memory_mb=stats.memory_mb(), **tick_stats.means())
        store.save(step + 1, chief=chief)
        if chief and (tick % snap == 0 or done):
            record.update(_snapshot(state, run_dir, grid_z, nimg, metrics))
        if chief:
            writer.write(record)
            log(stats.progress_line(record))
        tick, tick_start_nimg, tick_start_time = tick + 1, nimg, time.time()
    if chief:
        log(f"done: {int(state.nimg.numpy()) / 1000:.3f} kimg in {run_dir}")


def _snapshot(state, run_dir, grid_z, nimg, metrics):
    """Export G_ema as .keras, write the preview PNG; returns metric values."""
    name = f"{nimg // 1000:06d}"
    keras_path = run_dir / f"network-snapshot-{name}.keras"
    tmp = run_dir / f"network-snapshot-{name}.tmp.keras"
    state.G_ema.save(tmp)
    os.replace(tmp, keras_path)
    fakes = np.concatenate([state.G_ema(tf.constant(z, tf.float32), noise_mode="const").numpy()
                            for z in np.split(grid_z, PREVIEW_GRID[1])])
    preview.write_png(run_dir / f"fakes{name}.png", preview.preview_grid(fakes, PREVIEW_GRID[0]))
    return {f"metrics/{k}": float(v) for k, v in (metrics(state.G_ema) if metrics else {}).items()}
