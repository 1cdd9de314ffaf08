"""`TrainingState`: the networks, optimizers, counters and step function of one run on TensorFlow, and how they
are checkpointed."""
import dataclasses
from typing import Optional

import keras
import tensorflow as tf

from tf3dstylegan import checkpoints
from tf3dstylegan.backend.tensorflow import checkpoints as tf_checkpoints
from tf3dstylegan.backend.tensorflow.step import TrainStep
from tf3dstylegan.config import Config
from tf3dstylegan.training.augment import AugmentPipe
from tf3dstylegan.training.optimizers import make_optimizer
from tf3dstylegan.training.transfer import MODELS
OPTIMIZERS = ("g_opt", "d_opt")


@dataclasses.dataclass
class TrainingState:
    cfg: Config
    strategy: tf.distribute.Strategy
    batch: int
    seed: int
    G: keras.Model
    D: keras.Model
    G_ema: keras.Model
    g_opt: keras.optimizers.Optimizer
    d_opt: keras.optimizers.Optimizer
    pl_mean: tf.Variable
    step: tf.Variable
    nimg: tf.Variable
    seconds: tf.Variable
    rng: tf.random.Generator
    train_step: TrainStep
    augment: Optional[AugmentPipe] = None

    def checkpoint_nodes(self, layout="path"):
        """{name: node} of everything a resume needs, in the given checkpoint layout."""
        others = dict(step=self.step, nimg=self.nimg, seconds=self.seconds, pl_mean=self.pl_mean, rng=self.rng)
        if self.augment is not None:
            others["augment"] = tf.train.Checkpoint(**self.augment.variables)
        return tf_checkpoints.nodes({m: getattr(self, m) for m in MODELS}, {o: getattr(self, o) for o in OPTIMIZERS},
                                 others, layout=layout)


def build_optimizers(cfg, precision, G, D):
    """Adam for G and D, built on their variables, and the path-length mean (call inside strategy.scope())."""
    g_opt, d_opt = (make_optimizer(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, interval, precision)
                    for lr, interval in ((cfg.g_lr, cfg.g_reg_interval), (cfg.d_lr, cfg.d_reg_interval)))
    g_opt.build(G.trainable_variables)
    d_opt.build(D.trainable_variables)
    pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean", synchronization=tf.VariableSynchronization.ON_WRITE,
                          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    return g_opt, d_opt, pl_mean


def build_state(cfg, strategy, batch, seed, precision="float32", jit=False, gradient_checkpointing=False,
                augment=None, label_table=None):
    """A fresh TrainingState: G_ema starts equal to G; all random draws follow `seed`. augment: a function that
    makes the augmentation pipe (or None), called under the strategy's scope. label_table: [M, label_size] labels
    of the dataset that fakes' labels are drawn from (conditional configs)."""
    from tf3dstylegan.networks import build_discriminator, build_generator
    rng = tf.random.Generator.from_seed(seed)  # outside the scope: identical on every worker
    keras.utils.set_random_seed(seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strategy.scope():
            G = build_generator(cfg, gradient_checkpointing=gradient_checkpointing)
            D = build_discriminator(cfg, gradient_checkpointing=gradient_checkpointing)
            G_ema = build_generator(cfg)
            for ema, var in zip(G_ema.variables, G.variables, strict=True):
                ema.assign(var)
            g_opt, d_opt, pl_mean = build_optimizers(cfg, precision, G, D)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            nimg = tf.Variable(0, dtype=tf.int64, trainable=False, name="nimg")
            seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
            pipe = augment() if augment is not None else None
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    train_step = TrainStep(cfg, strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean, batch, jit=jit, augment=pipe,
                           label_table=label_table)
    return TrainingState(cfg=cfg, strategy=strategy, batch=batch, seed=seed, G=G, D=D, G_ema=G_ema, g_opt=g_opt,
                         d_opt=d_opt, pl_mean=pl_mean, step=step, nimg=nimg, seconds=seconds, rng=rng,
                         train_step=train_step, augment=pipe)


def restore_state(state, checkpoint_dir, log=print):
    """Resume from the newest checkpoint of `checkpoint_dir` that reads completely; returns its path."""
    try:  # a run that trained without augmentation resumes with it: the pipe starts fresh
        return tf_checkpoints.restore_newest(checkpoint_dir, state.checkpoint_nodes, complete=True, log=log,
                                          optional=("augment",))
    except checkpoints.CheckpointError as err:
        raise ValueError(f"{err}; config {state.cfg.name!r}, batch {state.batch}; start a new run with "
                         f"--resume none, or pass the matching --cfg/--override") from None
