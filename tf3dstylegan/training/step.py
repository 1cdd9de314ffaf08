"""One training iteration (G step, lazy G reg, D step, lazy D reg, G_ema update) under tf.distribute.

All random draws of a step come from one tf.random.Generator in the cross-replica context: latents are drawn
for the global batch and each replica takes its slice, noise maps come from stateless ops seeded per step and
replica. So a step is reproducible from the generator state (checkpointed) and, without noise and style
mixing, independent of how the batch is split over replicas.
"""
import tensorflow as tf
import keras

from tf3dstylegan.training import losses


def lazy_factor(interval):
    """c = interval / (interval + 1) for lazy regularisation (1 when regularising every step)."""
    return 1.0 if interval is None else interval / (interval + 1.0)


def make_optimizer(lr, beta1, beta2, epsilon, interval, precision):
    """Adam with lazy regularisation's adjustment (lr * c, beta ** c); loss-scaled for float16."""
    c = lazy_factor(interval)
    opt = keras.optimizers.Adam(learning_rate=lr * c, beta_1=beta1 ** c, beta_2=beta2 ** c, epsilon=epsilon)
    return keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt


def ema_beta(batch_size, ema_kimg):
    """Per-step G_ema decay for a half-life of ema_kimg thousand images."""
    return 0.5 ** (batch_size / (ema_kimg * 1000.0)) if ema_kimg > 0 else 0.0


class TrainStep:
    """Builds and runs the compiled step functions for one strategy and global batch."""

    def __init__(self, cfg, strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean, global_batch, jit=False):
        replicas = strategy.num_replicas_in_sync
        if global_batch % replicas:
            raise ValueError(f"batch {global_batch} is not divisible by the {replicas} replicas")
        self.cfg, self.strategy = cfg, strategy
        self.G, self.D, self.G_ema, self.g_opt, self.d_opt = G, D, G_ema, g_opt, d_opt
        self.rng, self.pl_mean, self.jit = rng, pl_mean, jit
        self.batch, self.local_batch = global_batch, global_batch // replicas
        self.pl_local = max(1, self.local_batch // cfg.pl_batch_shrink)
        self.pl_batch = self.pl_local * replicas
        self.beta = ema_beta(global_batch, cfg.ema_kimg)
        self.has_d_reg = cfg.d_loss != "logistic"
        self._functions = {}

    def phases(self, step):
        """(lazy G reg, lazy D reg) due at this step (0-based)."""
        g_int, d_int = self.cfg.g_reg_interval, self.cfg.d_reg_interval
        g_reg = self.cfg.pl_weight > 0 and g_int is not None and step % g_int == 0
        d_reg = self.has_d_reg and d_int is not None and step % d_int == 0
        return g_reg, d_reg

    def __call__(self, reals, step):
        """Run one iteration on distributed reals; returns {name: float tensor} of global-batch means."""
        key = self.phases(step)
        if key not in self._functions:
            self._functions[key] = tf.function(lambda r: self._step(r, *key), jit_compile=self.jit)
        return self._functions[key](reals)

    # --- cross-replica ---
    def _step(self, reals, g_reg, d_reg):
        z_dim, B, rng = self.G.z_dim, self.batch, self.rng
        stats = self._run(self._g_main, rng.normal([B, z_dim]), rng.normal([self.pl_batch, z_dim]), rng.make_seeds(1))
        if g_reg:
            stats.update(self._run(self._g_reg, rng.normal([self.pl_batch, z_dim]), rng.make_seeds(1)))
        stats.update(self._run(self._d_main, reals, rng.normal([B, z_dim]), rng.make_seeds(1)))
        if d_reg:
            stats.update(self._run(self._d_reg, reals, rng.normal([B, z_dim]), rng.make_seeds(1)))
        self._update_ema()
        stats["pl_mean"] = tf.identity(self.pl_mean)
        return stats

    def _run(self, fn, *args):
        per_replica = self.strategy.run(fn, args=args)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def _update_ema(self):
        for ema, var in zip(self.G_ema.trainable_variables, self.G.trainable_variables):
            ema.assign(var + (ema - var) * self.beta)
        for ema, var in zip(self.G_ema.non_trainable_variables, self.G.non_trainable_variables):
            ema.assign(var)

    # --- per replica ---
    def _slice(self, tensor, size):
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tensor[rid * size:(rid + 1) * size]

    def _generate(self, z, rand):
        """Training forward pass: (ws with w_avg update and style mixing, volumes with random noise)."""
        ws = self.G.training_styles(z, rng=rand)
        noise = None
        if not self.cfg.no_noise:
            noise = [rand.normal(tf.concat([tf.shape(z)[:1], shape[1:]], axis=0))
                     for shape in self.G.synthesis.noise_shapes]
        return ws, self.G.synthesis(ws, noise_mode="random", noise=noise)

    def _apply(self, opt, loss, variables, tape):
        scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss
        grads = tape.gradient(scaled, variables)
        opt.apply_gradients(zip(grads, variables))

    def _average(self, per_example, global_size):
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_size)

    def _g_main(self, z, pl_z, seed):
        combined = self.cfg.g_reg_interval is None and self.cfg.pl_weight > 0
        variables = self.G.trainable_variables
        with tf.GradientTape() as tape:
            rand = StatelessRandom(seed)
            _, fake = self._generate(self._slice(z, self.local_batch), rand)
            loss = self._average(losses.g_nonsaturating(self.D(fake, training=True)), self.batch)
            stats = {"loss/G": loss}
            total = loss
            if combined:
                stats.update(self._path_length_reg(self._slice(pl_z, self.pl_local), rand, scale=1.0))
                total = total + stats["loss/G_reg"]
        self._apply(self.g_opt, total, variables, tape)
        return stats

    def _g_reg(self, z, seed):
        variables = self.G.trainable_variables
        with tf.GradientTape() as tape:
            stats = self._path_length_reg(self._slice(z, self.pl_local), StatelessRandom(seed),
                                          scale=float(self.cfg.g_reg_interval))
        self._apply(self.g_opt, stats["loss/G_reg"], variables, tape)
        return stats

    def _path_length_reg(self, z, rand, scale):
        """Path-length penalty (recorded on the caller's tape); updates pl_mean with the global mean length."""
        with tf.GradientTape() as inner:
            ws, fake = self._generate(z, rand)
            inner.watch(ws)
            fake = tf.cast(fake, tf.float32)
            probe = tf.reduce_sum(fake * losses.path_length_noise(tf.shape(fake), rand.next_seed()))
        lengths = losses.path_lengths(inner.gradient(probe, ws))
        ctx = tf.distribute.get_replica_context()
        mean_length = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.stop_gradient(lengths)))
        new_mean = losses.updated_pl_mean(self.pl_mean, mean_length / self.pl_batch, self.cfg.pl_decay)
        self.pl_mean.assign(new_mean)
        penalty = losses.path_length_penalty(lengths, new_mean, self.cfg.pl_weight)
        return {"loss/G_reg": self._average(penalty * scale, self.pl_batch),
                "pl_length": self._average(tf.stop_gradient(lengths), self.pl_batch)}

    def _d_main(self, reals, z, seed):
        combined = self.has_d_reg and self.cfg.d_reg_interval is None
        return self._d_objective(reals, z, seed, main=True, reg=combined, scale=1.0)

    def _d_reg(self, reals, z, seed):
        return self._d_objective(reals, z, seed, main=False, reg=True,
                                 scale=float(self.cfg.d_reg_interval))

    def _d_objective(self, reals, z, seed, main, reg, scale):
        """D logistic loss and/or R1 (on reals) / R2 (on fakes) penalty, one optimizer step."""
        r1 = self.cfg.d_loss == "logistic_r1"
        fake = tf.stop_gradient(self._generate(self._slice(z, self.local_batch), StatelessRandom(seed))[1])
        reals = tf.cast(reals, fake.dtype)
        variables = self.D.trainable_variables
        stats = {}
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                inner.watch([reals, fake])
                real_logits = self.D(reals, training=True) if (main or (reg and r1)) else None
                fake_logits = self.D(fake, training=True) if (main or (reg and not r1)) else None
            total = 0.0
            if main:
                stats["loss/D"] = self._average(losses.d_logistic(real_logits, fake_logits), self.batch)
                stats["D/real"] = self._average(tf.reshape(tf.cast(real_logits, tf.float32), [-1]), self.batch)
                stats["D/fake"] = self._average(tf.reshape(tf.cast(fake_logits, tf.float32), [-1]), self.batch)
                total = stats["loss/D"]
            if reg:
                x, logits = (reals, real_logits) if r1 else (fake, fake_logits)
                grads = inner.gradient(tf.reduce_sum(tf.cast(logits, tf.float32)), x)
                penalty = losses.gradient_penalty(grads, self.cfg.d_gamma)
                stats["loss/D_reg"] = self._average(penalty * scale, self.batch)
                total = total + stats["loss/D_reg"]
        self._apply(self.d_opt, total, variables, tape)
        return stats


class StatelessRandom:
    """normal/uniform like tf.random.Generator, from stateless ops: call k of replica r uses seed + (r, k)."""

    def __init__(self, seed):
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        self.seed = tf.reshape(seed, [2]) + tf.cast(tf.stack([rid, 0]), seed.dtype)
        self.calls = 0

    def next_seed(self):
        self.calls += 1
        return self.seed + tf.constant([0, self.calls], self.seed.dtype)

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32):
        return tf.random.stateless_normal(shape, self.next_seed(), mean, stddev, dtype)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
        return tf.random.stateless_uniform(shape, self.next_seed(), minval, maxval, dtype)
