"""One training iteration (G step, lazy G reg, D step, lazy D reg, G_ema update) under tf.distribute.

All random draws of a step come from one tf.random.Generator (checkpointed) in the cross-replica context:
latents and path-length probe directions are drawn for the global batch and each replica takes its slice;
noise maps and style mixing use stateless ops seeded from it per phase and replica. So a step is
reproducible after a resume and, without noise maps and style mixing, independent of how the batch is split
over replicas. Losses are averaged over the global batch, so summing gradients over replicas gives its mean.
"""
import tensorflow as tf

from tf3dstylegan.backend.tensorflow.random import StatelessRandom
from tf3dstylegan.training import losses
from tf3dstylegan.training.optimizers import (AUGMENT_D_FAKES, AUGMENT_D_REALS, AUGMENT_G_FAKES, ema_beta,
                                                has_d_reg, regularisation_due)


class TrainStep:
    """Builds and runs the compiled step functions for one strategy and global batch."""

    def __init__(self, cfg, strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean, global_batch, jit=False,
                 augment=None, label_table=None):
        """augment: an augment.AugmentPipe (made under the strategy's scope) that every volume D sees goes
        through; its p then follows ADA's heuristic and the outputs gain aug/p and aug/rt.
        label_table: [M, label_size] labels of the dataset (conditional networks): reals then come as (volumes,
        labels) and every fake gets a row drawn from the table; its latent carries it as z's last columns."""
        replicas = strategy.num_replicas_in_sync
        if global_batch % replicas:
            raise ValueError(f"batch {global_batch} is not divisible by the {replicas} replicas")
        self.cfg, self.strategy = cfg, strategy
        self.G, self.D, self.G_ema, self.g_opt, self.d_opt = G, D, G_ema, g_opt, d_opt
        self.rng, self.pl_mean, self.jit, self.augment = rng, pl_mean, jit, augment
        if bool(cfg.label_size) != (label_table is not None):
            raise ValueError(f"label_size {cfg.label_size} needs a label table of that width (and only then)")
        self.label_table = None if label_table is None else tf.constant(label_table, tf.float32)
        self.batch, self.local_batch = global_batch, global_batch // replicas
        group = min(cfg.mbstd_group_size, self.local_batch)
        if group > 1 and self.local_batch % group:
            raise ValueError(f"per-replica batch {self.local_batch} is not divisible by the minibatch-stddev "
                             f"group size {group}")
        self.pl_local = max(1, self.local_batch // cfg.pl_batch_shrink)
        self.pl_batch = self.pl_local * replicas
        self.beta = ema_beta(global_batch, cfg.ema_kimg)
        self.has_d_reg = has_d_reg(cfg)
        self.g_combined = cfg.g_reg_interval is None and cfg.pl_weight > 0  # PL term in every G step
        self._functions = {}

    def phases(self, step):
        """(lazy G reg, lazy D reg) due at this step (0-based)."""
        return regularisation_due(self.cfg, step)

    def __call__(self, reals, step):
        """Run one iteration on distributed reals; returns {name: float tensor} of global-batch means."""
        key = self.phases(step)
        if key not in self._functions:
            self._functions[key] = tf.function(lambda r: self._step(r, *key), jit_compile=self.jit, autograph=False)
        per_replica = self._functions[key](reals)
        # Summed outside the step function: a collective issued inside it could pair up with another
        # replica's gradient all-reduce.
        out = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}
        if self.augment is not None:
            out["aug/p"] = tf.identity(self.augment.p.value)  # the p this step used
            self.augment.update(out["aug/rt"], step, self.batch)
        return out

    # --- cross-replica ---
    def _step(self, reals, g_reg, d_reg):
        B, rng = self.batch, self.rng
        pl_inputs = (self._latents(self.pl_batch), self._pl_probe()) if self.g_combined else ()
        stats = self._run(self._g_main, self._latents(B), rng.make_seeds(1), *pl_inputs)
        if g_reg:
            stats.update(self._run(self._g_reg, self._latents(self.pl_batch), self._pl_probe(), rng.make_seeds(1)))
        stats.update(self._run(self._d_main, reals, self._latents(B), rng.make_seeds(1)))
        if d_reg:
            stats.update(self._run(self._d_reg, reals, self._latents(B), rng.make_seeds(1)))
        self._update_ema()
        stats.update(self.strategy.run(self._pl_mean_share))
        return stats

    def _latents(self, n):
        """[n, latent_size (+ label_size)]: z, then (conditional networks) a label row drawn from the dataset's."""
        z = self.rng.normal([n, self.G.latent_size])
        if self.label_table is None:
            return z
        rows = self.rng.uniform([n], 0, tf.shape(self.label_table, out_type=tf.int64)[0], dtype=tf.int64)
        return tf.concat([z, tf.gather(self.label_table, rows)], axis=1)

    def _pl_probe(self):
        """Image-space directions y of the path-length probe for the global PL batch: [pl_batch, X, Y, Z, C]."""
        shape = [self.pl_batch, *self.G.img_shape, self.G.num_channels]
        return tf.random.stateless_normal(shape, self.rng.make_seeds(1)[:, 0]) * losses.path_length_scale(shape)

    def _run(self, fn, *args):
        return self.strategy.run(fn, args=args)

    def _pl_mean_share(self):
        """pl_mean / replicas, so that the sum over replicas reports pl_mean."""
        return {"pl_mean": self.pl_mean / self.strategy.num_replicas_in_sync}

    def _update_ema(self):
        for ema, var in zip(self.G_ema.trainable_variables, self.G.trainable_variables):
            ema.assign(var + (ema - var) * self.beta)
        for ema, var in zip(self.G_ema.non_trainable_variables, self.G.non_trainable_variables):
            ema.assign(var)

    # --- per replica ---
    def _slice(self, tensor, size):
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tensor[rid * size:(rid + 1) * size]

    def _generate(self, latents, rand, checkpoint=None):
        """Training forward pass: (ws with w_avg update and style mixing, volumes with random noise, labels or
        None). latents: see _latents.

        checkpoint=False where second-order gradients follow (gradient checkpointing is first-order only)."""
        z = latents[:, :self.G.latent_size]
        labels = None if self.label_table is None else latents[:, self.G.latent_size:]
        ws = self.G.training_styles(z, labels, rng=rand)
        noise = None
        if not self.cfg.no_noise:
            noise = [rand.normal(tf.concat([tf.shape(z)[:1], shape[1:]], axis=0))
                     for shape in self.G.synthesis.noise_shapes]
        return ws, self.G.synthesis(ws, noise_mode="random", noise=noise, checkpoint=checkpoint), labels

    def _apply(self, opt, loss, variables, tape):
        scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss
        grads = tape.gradient(scaled, variables)
        # Variables a regulariser does not depend on (e.g. the output bias) get a zero gradient.
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        opt.apply_gradients(zip(grads, variables))

    def _average(self, per_example, global_size):
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_size)

    def _g_main(self, z, seed, pl_z=None, pl_probe=None):
        variables = self.G.trainable_variables
        with tf.GradientTape() as tape:
            rand = replica_random(seed)
            _, fake, labels = self._generate(self._slice(z, self.local_batch), rand)
            logits = self._discriminate(fake, labels, rand, AUGMENT_G_FAKES)
            loss = self._average(losses.g_nonsaturating(logits), self.batch)
            stats = {"loss/G": loss}
            total = loss
            if self.g_combined:
                pl_z, pl_probe = self._slice(pl_z, self.pl_local), self._slice(pl_probe, self.pl_local)
                stats.update(self._path_length_reg(pl_z, pl_probe, rand, 1.0, tape))
                total = total + stats["loss/G_reg"]
        self._apply(self.g_opt, total, variables, tape)
        return stats

    def _g_reg(self, z, pl_probe, seed):
        variables = self.G.trainable_variables
        with tf.GradientTape() as tape:
            stats = self._path_length_reg(self._slice(z, self.pl_local), self._slice(pl_probe, self.pl_local),
                                          replica_random(seed), float(self.cfg.g_reg_interval), tape)
        self._apply(self.g_opt, stats["loss/G_reg"], variables, tape)
        return stats

    def _path_length_reg(self, z, probe_direction, rand, scale, tape):
        """Path-length penalty (recorded on `tape`); updates pl_mean with the mean length over all replicas."""
        with tf.GradientTape() as inner:
            ws, fake, _ = self._generate(z, rand, checkpoint=False)
            inner.watch(ws)
            fake = tf.cast(fake, tf.float32)
            probe = tf.reduce_sum(fake * probe_direction)
        lengths = losses.path_lengths(inner.gradient(probe, ws))
        with tape.stop_recording():
            ctx = tf.distribute.get_replica_context()
            # merge_call: every replica reaches this point before the sum (an all_reduce issued here could
            # pair up with another collective of another replica).
            total = ctx.merge_call(lambda strategy, value: strategy.reduce("SUM", value, axis=None),
                                   args=(tf.reduce_sum(lengths),))
            mean_length = total / self.pl_batch
            new_mean = losses.updated_pl_mean(self.pl_mean, mean_length, self.cfg.pl_decay)
            self.pl_mean.assign(new_mean)
        penalty = losses.path_length_penalty(lengths, new_mean, self.cfg.pl_weight)
        return {"loss/G_reg": self._average(penalty * scale, self.pl_batch),
                "pl_length": self._average(tf.stop_gradient(lengths), self.pl_batch)}

    def _discriminate(self, volumes, labels, rand, tag, checkpoint=None):
        """D logits of volumes (with their labels or None), augmented first when the step has a pipe (seeded from
        rand's seed and tag)."""
        if self.augment is not None:
            volumes = self.augment(volumes, rand.child(tag).seed)
        return self.D(volumes, labels, training=True, checkpoint=checkpoint)

    def _d_main(self, reals, z, seed):
        combined = self.has_d_reg and self.cfg.d_reg_interval is None
        return self._d_objective(reals, z, seed, main=True, reg=combined, scale=1.0)

    def _d_reg(self, reals, z, seed):
        return self._d_objective(reals, z, seed, main=False, reg=True,
                                 scale=float(self.cfg.d_reg_interval))

    def _d_objective(self, reals, z, seed, main, reg, scale):
        """D logistic loss and/or R1 (on reals) / R2 (on fakes) penalty, one optimizer step."""
        r1 = self.cfg.d_loss == "logistic_r1"
        rand = replica_random(seed)
        reals, real_labels = reals if isinstance(reals, tuple) else (reals, None)
        needs_fakes = main or not r1  # R1 alone looks at reals only: no generator pass (nor w_avg update)
        fake, fake_labels = None, None
        if needs_fakes:
            _, fake, fake_labels = self._generate(self._slice(z, self.local_batch), rand)
            fake = tf.stop_gradient(fake)
        reals = tf.cast(reals, tf.float32)  # as the generator's volumes
        variables = self.D.trainable_variables
        stats = {}
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                inner.watch([reals] + ([fake] if needs_fakes else []))
                checkpoint = False if reg else None  # R1/R2 need second-order gradients
                # Augmented inside the tape: R1/R2 differentiate w.r.t. the un-augmented volumes, as ADA does.
                real_logits = (self._discriminate(reals, real_labels, rand, AUGMENT_D_REALS, checkpoint)
                               if (main or r1) else None)
                fake_logits = (self._discriminate(fake, fake_labels, rand, AUGMENT_D_FAKES, checkpoint)
                               if needs_fakes else None)
                probed = real_logits if r1 else fake_logits
                probe = tf.reduce_sum(tf.cast(probed, tf.float32)) if reg else None
            total = 0.0
            if main:
                stats["loss/D"] = self._average(losses.d_logistic(real_logits, fake_logits), self.batch)
                stats["D/real"] = self._average(tf.reshape(tf.cast(real_logits, tf.float32), [-1]), self.batch)
                stats["D/fake"] = self._average(tf.reshape(tf.cast(fake_logits, tf.float32), [-1]), self.batch)
                if self.augment is not None:  # ADA's overfitting heuristic r_t = E[sign(D(reals))]
                    signs = tf.sign(tf.reshape(tf.cast(real_logits, tf.float32), [-1]))
                    stats["aug/rt"] = self._average(signs, self.batch)
                total = stats["loss/D"]
            if reg:
                grads = inner.gradient(probe, reals if r1 else fake)
                penalty = losses.gradient_penalty(grads, self.cfg.d_gamma)
                stats["loss/D_reg"] = self._average(penalty * scale, self.batch)
                total = total + stats["loss/D_reg"]
        self._apply(self.d_opt, total, variables, tape)
        return stats


def replica_random(seed):
    """This replica's stateless source of a step phase's seed [1, 2]: call k uses fold_in(fold_in(seed, replica), k)."""
    rid = tf.distribute.get_replica_context().replica_id_in_sync_group
    return StatelessRandom(tf.reshape(seed, [2])).child(rid)
