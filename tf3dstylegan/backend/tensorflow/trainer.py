"""The training run on TensorFlow: tf.distribute strategies, tf.data input, TrainStep, tf.train checkpoints.

A Trainer (see `tf3dstylegan.training.loop`, which drives one on any backend) builds the networks and optimizers,
restores or initialises them, yields batches, runs steps, keeps the step/nimg/seconds counters and checkpoints.
"""
from pathlib import Path

import tensorflow as tf

from tf3dstylegan.backend.tensorflow import distribute
from tf3dstylegan.backend.tensorflow.checkpoints import CheckpointWriter
from tf3dstylegan.backend.tensorflow.state import build_state, restore_state
from tf3dstylegan.training.augment import build_augment
from tf3dstylegan.training.transfer import MODELS, initialize_from


class Trainer:
    """G, D, G_ema, their optimizers and the step of one run under a tf.distribute strategy."""

    def __init__(self, cfg, opts, label_table, checkpoint_dir):
        strategy = opts.strategy
        if not isinstance(strategy, tf.distribute.Strategy):
            strategy = distribute.make_strategy(strategy, gpus=opts.gpus)
        self.strategy, self.cfg, self.opts, self.label_table = strategy, cfg, opts, label_table
        self.chief = strategy.extended.should_checkpoint
        self.description = distribute.describe(strategy)
        self.num_replicas = strategy.num_replicas_in_sync
        augment = None if opts.aug == "none" else (lambda: build_augment(
            opts.aug, opts.augpipe, opts.aug_p, opts.aug_target, kimg=opts.ada_kimg))
        self.state = build_state(cfg, strategy, opts.batch, opts.seed, opts.precision, opts.jit,
                                 opts.gradient_checkpointing, augment=augment, label_table=label_table)
        self.G, self.D, self.G_ema, self.augment = self.state.G, self.state.D, self.state.G_ema, self.state.augment
        self.writer = CheckpointWriter(checkpoint_dir, self.state.checkpoint_nodes(), keep=opts.keep_checkpoints)

    def restore(self, checkpoint_dir, log=print):
        """Continue from the newest checkpoint that reads completely; returns its path."""
        return restore_state(self.state, checkpoint_dir, log)

    def initialize_from(self, path, log=print):
        initialize_from(path, {name: getattr(self.state, name) for name in MODELS}, self.cfg.name, log)

    @property
    def counters(self):
        """(step, nimg, seconds) so far."""
        return int(self.state.step.numpy()), int(self.state.nimg.numpy()), float(self.state.seconds.numpy())

    def set_counters(self, step, nimg, seconds):
        self.state.step.assign(step)
        self.state.nimg.assign(nimg)
        self.state.seconds.assign(seconds)

    def batches(self, data, start_step, info=None):
        """An iterator of distributed batches from `data` (a records folder, its DatasetInfo in `info` when read
        already, or a function (input_context, start_step) -> tf.data.Dataset of per-replica batches), from step
        `start_step` on. A damaged record met mid-run ends it with one line naming its file."""
        make = _dataset_function(data, self.cfg, self.opts.batch, self.opts.seed, self.state.train_step.label_table
                                 is not None, info)
        return _named_errors(iter(self.strategy.distribute_datasets_from_function(lambda ctx: make(ctx, start_step))),
                             data)

    def step(self, batch, step):
        """One training step on a batch; {name: device scalar} of global-batch means (read later, once a tick)."""
        return self.state.train_step(batch, step)

    def save(self, step):
        """A checkpoint of everything a resume needs (every worker takes part; only the chief's is kept)."""
        self.writer.save(step, should_checkpoint=self.chief)

    def sync(self):
        """The Keras variables already hold the current values on TensorFlow."""


def _named_errors(iterator, data):
    """The iterator's batches; a damaged record met mid-run ends it with one line naming its file."""
    while True:
        try:
            yield next(iterator)
        except tf.errors.OpError as err:  # a damaged record: name its file, not the graph
            from tf3dstylegan.data.pipeline import bad_record_message
            message = None if callable(data) else bad_record_message(err, data)
            if message is None:
                raise
            raise ValueError(message) from None


def _dataset_function(data, cfg, batch, seed, with_labels, info):
    """input_context, start_step -> per-replica dataset, checking the volume shape against the config."""
    if callable(data):
        make = data
    else:
        from tf3dstylegan.data.pipeline import derived_seed, make_dataset
        path = Path(data)

        def make(ctx, start_step):
            return make_dataset(path, batch, seed=derived_seed(seed, start_step), shuffle=True, repeat=True,
                                mirror_augment=cfg.mirror_augment, input_context=ctx, with_labels=with_labels,
                                info=info)
    expected = (*cfg.img_shape, cfg.num_channels)

    def checked(ctx, start_step):
        dataset = make(ctx, start_step)
        spec = dataset.element_spec[0] if isinstance(dataset.element_spec, tuple) else dataset.element_spec
        shape = tuple(spec.shape[1:])
        if shape != expected:
            raise ValueError(f"{data}: volumes are {shape} but config {cfg.name!r} expects {expected}")
        return dataset
    return checked
