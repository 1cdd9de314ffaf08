"""The R1 phase with and without a generator pass: what dropping it from the lazy R1 step saved (issue 31).

    python bench/bench_r1_phase.py --cfg demo --batch 8 --repeats 20

The R1 penalty looks at reals only; the TensorFlow step once still ran G on the phase's latents there and
dropped the volumes (its only lasting effect: the w_avg update). This times today's TrainStep against a subclass
that puts that pass back exactly as it was (generated, watched, unused), interleaved in one process
(step_timing.time_steps), with R1 every step (`d_loss=logistic_r1`, `d_reg_interval=1`) so that each timed step
holds one R1 phase. TensorFlow prunes a function's unused stateless ops, so the discarded pass may cost less than a
full generator forward: a third variant makes its volumes reach the outputs (nothing pruned) to show the full
cost. One JSON line per variant: "plain" is today's step.
"""
import json

from absl import app, flags

from step_timing import step_records, time_steps

flags.DEFINE_string("cfg", "demo", "Preset.")
flags.DEFINE_integer("batch", 8, "Global batch.")
flags.DEFINE_integer("repeats", 20, "Timed steps per variant after one warm-up step.")
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS


def with_generator_pass(step_class, used=False):
    """TrainStep as it was: its R1 phase also generates fakes from the phase's latents and discards them (used: and
    makes the volumes reach the phase's outputs, so that nothing of the pass can be pruned)."""
    from tf3dstylegan.backend.tensorflow.step import replica_random

    class WithGeneratorPass(step_class):
        def _d_reg(self, reals, z, seed):
            import tensorflow as tf
            _, fake, _ = self._generate(self._slice(z, self.local_batch), replica_random(seed))
            with tf.GradientTape() as inner:
                inner.watch(tf.stop_gradient(fake))
            stats = super()._d_reg(reals, z, seed)
            if used:
                stats["fake_mean"] = tf.reduce_mean(fake)
            return stats

    return WithGeneratorPass


def main(_):
    import tensorflow as tf
    from tf3dstylegan import load_config
    from tf3dstylegan.backend.tensorflow.state import build_state
    cfg = load_config(FLAGS.cfg, batch_size=FLAGS.batch, d_loss="logistic_r1", d_reg_interval=1)
    base = build_state(cfg, tf.distribute.get_strategy(), FLAGS.batch, FLAGS.seed).train_step
    variants = {"plain": base}
    for name, used in (("with_generator_pass", False), ("with_generator_pass_used", True)):
        variants[name] = with_generator_pass(type(base), used)(cfg, base.strategy, base.G, base.D, base.G_ema,
                                                               base.g_opt, base.d_opt, base.rng, base.pl_mean,
                                                               FLAGS.batch)
    reals = tf.random.uniform([FLAGS.batch, *cfg.img_shape, 1], -1.0, 1.0, seed=1)
    wall, cpu = time_steps({name: (step, reals) for name, step in variants.items()}, FLAGS.repeats)
    for record in step_records(wall, cpu, cfg=FLAGS.cfg, batch=FLAGS.batch, img_shape=list(cfg.img_shape)):
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
