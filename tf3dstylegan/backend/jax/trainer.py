"""The training run on JAX: the jitted JaxTrainStep, the NumPy input pipeline, portable npz checkpoints, and several
devices through `keras.distribution.DataParallel` (several hosts: `jax.distributed`, set up by
`keras.distribution.initialize()` when JAX's coordinator variables are set).

The same Trainer interface as `tf3dstylegan.backend.tensorflow.trainer`, driven by `tf3dstylegan.training.loop`.
"""
import contextlib
import os

import jax
import jax.numpy as jnp
import keras
import numpy as np

from tf3dstylegan import checkpoints
from tf3dstylegan.backend.jax.step import JaxTrainStep
from tf3dstylegan.training.augment import build_augment
from tf3dstylegan.training.optimizers import make_optimizer
from tf3dstylegan.training.transfer import MODELS, initialize_from

JAX_PRECISIONS = ("float32", "mixed_bfloat16")  # float16 needs loss scaling, which this step does not do
OPTIMIZERS = ("g_opt", "d_opt")


class Trainer:
    """G, D, G_ema, their optimizers and the jitted step of one run, on every local JAX device."""

    def __init__(self, cfg, opts, label_table, checkpoint_dir):
        if opts.precision not in JAX_PRECISIONS:
            raise ValueError(f"--precision: {opts.precision} is not supported on the JAX backend; use one of "
                             f"{', '.join(JAX_PRECISIONS)}")
        if os.environ.get("JAX_COORDINATOR_ADDRESS") or opts.strategy == "multiworker":
            keras.distribution.initialize()  # jax.distributed: every host runs the same command
        devices = jax.devices()
        if opts.gpus is not None:
            if opts.gpus > len(devices):
                raise ValueError(f"--gpus {opts.gpus} asked for, but only {len(devices)} device(s) are visible")
            devices = devices[:opts.gpus]
        if opts.batch % len(devices):
            raise ValueError(f"--batch: {opts.batch} is not divisible by the {len(devices)} devices")
        self.cfg, self.opts, self.label_table = cfg, opts, label_table
        self.distribution = keras.distribution.DataParallel(devices=devices) if len(devices) > 1 else None
        self.chief = jax.process_index() == 0
        self.num_replicas = len(devices)
        self.description = (f"JAX DataParallel over {len(devices)} {devices[0].platform} devices" if self.distribution
                            else f"JAX on one {devices[0].platform} device")
        self.checkpoint_dir = checkpoint_dir
        self._build(cfg, opts, label_table)
        self.counters = (0, 0, 0.0)

    def _build(self, cfg, opts, label_table):
        from tf3dstylegan.networks import build_discriminator, build_generator
        keras.utils.set_random_seed(opts.seed)
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(opts.precision)
        scope = self.distribution.scope() if self.distribution else contextlib.nullcontext()
        try:
            with scope:
                G = build_generator(cfg, gradient_checkpointing=opts.gradient_checkpointing)
                D = build_discriminator(cfg, gradient_checkpointing=opts.gradient_checkpointing)
                G_ema = build_generator(cfg)
                for ema, var in zip(G_ema.variables, G.variables, strict=True):
                    ema.assign(var)
                g_opt, d_opt = (make_optimizer(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, interval,
                                               opts.precision)
                                for lr, interval in ((cfg.g_lr, cfg.g_reg_interval), (cfg.d_lr, cfg.d_reg_interval)))
                g_opt.build(G.trainable_variables)
                d_opt.build(D.trainable_variables)
                self.augment = None if opts.aug == "none" else build_augment(
                    opts.aug, opts.augpipe, opts.aug_p, opts.aug_target, kimg=opts.ada_kimg)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self.G, self.D, self.G_ema, self.g_opt, self.d_opt = G, D, G_ema, g_opt, d_opt
        sharding = None
        if self.distribution:
            sharding = self.distribution.get_data_layout((opts.batch,)).backend_layout
        self.data_sharding = sharding
        self.train_step = JaxTrainStep(cfg, G, D, G_ema, g_opt, d_opt, opts.batch, augment=self.augment,
                                       label_table=label_table, data_sharding=sharding)
        self.key = jax.random.key(opts.seed)
        self.pl_mean = 0.0
        self.state = self.train_step.state(self.pl_mean)

    def _keys(self):
        """{checkpoint key: variable} of everything but the counters and pl_mean."""
        groups = {name: getattr(self, name).variables for name in MODELS + OPTIMIZERS}
        if self.augment is not None:
            groups["augment"] = list(self.augment.variables.values())
        return checkpoints.variable_keys(groups, optimizers=OPTIMIZERS)

    def restore(self, checkpoint_dir, log=print):
        """Continue from the newest npz checkpoint that fits; returns its path."""
        keys = self._keys()
        expected = checkpoints.expected_arrays(keys)
        expected.update(_COUNTERS)
        try:
            found, arrays = checkpoints.restore_newest_arrays(checkpoint_dir, expected, log)
        except checkpoints.CheckpointError as err:
            raise ValueError(f"{err}; config {self.cfg.name!r}, batch {self.opts.batch}; start a new run with "
                             f"--resume none, or pass the matching --cfg/--override") from None
        for key, var in keys.items():
            var.assign(arrays[key])
        self.pl_mean = float(arrays["pl_mean"])
        self.counters = (int(arrays["step"]), int(arrays["nimg"]), float(arrays["seconds"]))
        self.state = self.train_step.state(self.pl_mean)
        return found

    def initialize_from(self, path, log=print):
        initialize_from(path, {name: getattr(self, name) for name in MODELS}, self.cfg.name, log)
        self.state = self.train_step.state(self.pl_mean)

    def set_counters(self, step, nimg, seconds):
        self.counters = (step, nimg, seconds)

    def batches(self, data, start_step, info=None):
        """An iterator of batches [B, X, Y, Z, C] (or (volumes, labels)) placed on the devices, from a records folder
        (tf3dstylegan.data.make_batches; its DatasetInfo in `info` when read already) or a function start_step ->
        iterator of NumPy batches."""
        if callable(data):
            source = data(start_step)
        else:
            from tf3dstylegan.data import make_batches
            from tf3dstylegan.data.sampling import derived_seed
            source = make_batches(data, self.opts.batch, seed=derived_seed(self.opts.seed, start_step), shuffle=True,
                                  repeat=True, mirror_augment=self.cfg.mirror_augment,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  with_labels=self.label_table is not None, info=info)
        return (self._placed(batch) for batch in source)

    def _placed(self, batch):
        if isinstance(batch, tuple):
            return tuple(self._placed(part) for part in batch)
        expected = (*self.cfg.img_shape, self.cfg.num_channels)
        if batch.ndim == 5 and tuple(batch.shape[1:]) != expected:
            raise ValueError(f"volumes are {tuple(batch.shape[1:])} but config {self.cfg.name!r} expects {expected}")
        if self.data_sharding is None:
            return jax.device_put(batch)
        if jax.process_count() > 1:  # each host holds its own part of the global batch
            return jax.make_array_from_process_local_data(self.data_sharding, batch)
        return jax.device_put(batch, self.data_sharding)

    def step(self, batch, step):
        """One training step; {name: device scalar} of global-batch means (read later, once a tick)."""
        self.state, stats = self.train_step(self.state, batch, step, self.key)
        if self.augment is not None:
            stats["aug/p"] = self.state.aug_p  # the p this step used
            self.augment.update(stats["aug/rt"], step, self.opts.batch)
            self.state.aug_p = jnp.copy(self.augment.p.value)  # a copy: the next step donates the state's buffers
        return stats

    def sync(self):
        """Write the step's current values into the Keras variables (snapshots and checkpoints read those)."""
        self.train_step.assign(self.state)
        self.pl_mean = float(self.state.pl_mean)

    def save(self, step):
        """ckpt-<step>.npz of everything a resume needs (call sync() first); only the chief writes."""
        if not self.chief:
            return
        arrays = {key: np.asarray(var.value) for key, var in self._keys().items()}
        step_, nimg, seconds = self.counters
        arrays.update(pl_mean=np.float32(self.pl_mean), step=np.int64(step_), nimg=np.int64(nimg),
                      seconds=np.float64(seconds))
        checkpoints.write_arrays(self.checkpoint_dir, step, arrays, keep=self.opts.keep_checkpoints)


_COUNTERS = {"pl_mean": ((), "float32"), "step": ((), "int64"), "nimg": ((), "int64"), "seconds": ((), "float64")}

