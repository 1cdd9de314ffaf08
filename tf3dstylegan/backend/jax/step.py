"""One training iteration on JAX (G step, lazy G reg, D step, lazy D reg, G_ema update) as one jitted pure function
of the networks' variable values, with the loss math of `tf3dstylegan.training.losses`, as the TensorFlow step.

Every draw of step k comes from fold_in(key, k) (latents, label rows, noise maps, style mixing, path-length probes,
augmentation), so a step is reproducible after a resume and nothing random needs checkpointing. Losses are means
over the global batch; with several devices the batch is sharded along its first axis and the state replicated
(`keras.distribution.DataParallel`), and XLA sums the gradients (the minibatch-stddev groups then span the
global batch).
"""
import dataclasses
from typing import List

import jax
import jax.numpy as jnp
import keras
from keras import ops

from tf3dstylegan.backend.jax.random import StatelessRandom
from tf3dstylegan.training import losses
from tf3dstylegan.training.optimizers import (AUGMENT_D_FAKES, AUGMENT_D_REALS, AUGMENT_G_FAKES, ema_beta,
                                                has_d_reg, regularisation_due)

# fold_in tags of a step's phases
G_MAIN, G_REG, D_MAIN, D_REG = 1, 2, 3, 4


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class StepState:
    """The values of everything a step reads and changes, in the order of the Keras variable lists."""
    G: List[jax.Array]
    D: List[jax.Array]
    G_ema: List[jax.Array]
    g_opt: List[jax.Array]
    d_opt: List[jax.Array]
    pl_mean: jax.Array
    aug_p: jax.Array


class JaxTrainStep:
    """Builds and runs the jitted step functions (one per combination of lazy phases) for the networks given."""

    def __init__(self, cfg, G, D, G_ema, g_opt, d_opt, batch, augment=None, label_table=None, data_sharding=None):
        """g_opt, d_opt: Keras optimizers built on G's and D's trainable variables. augment: an AugmentPipe or None.
        label_table: [M, label_size] labels of the dataset (conditional networks): fakes get rows drawn from it.
        data_sharding: the sharding of batch-major arrays (None: one device)."""
        if bool(cfg.label_size) != (label_table is not None):
            raise ValueError(f"label_size {cfg.label_size} needs a label table of that width (and only then)")
        group = min(cfg.mbstd_group_size, batch)
        if group > 1 and batch % group:
            raise ValueError(f"batch {batch} is not divisible by the minibatch-stddev group size {group}")
        self.cfg, self.G, self.D, self.G_ema, self.g_opt, self.d_opt = cfg, G, D, G_ema, g_opt, d_opt
        self.batch, self.augment, self.data_sharding = batch, augment, data_sharding
        self.label_table = None if label_table is None else jnp.asarray(label_table, jnp.float32)
        self.pl_batch = max(1, batch // cfg.pl_batch_shrink)
        self.beta = ema_beta(batch, cfg.ema_kimg)
        self.g_combined = cfg.g_reg_interval is None and cfg.pl_weight > 0
        self._functions = {}

    # --- the state as values, and back ---
    def state(self, pl_mean):
        """The current values of every variable the step uses (pl_mean: the path-length mean's value)."""
        seen = set()

        def read(variables):  # the step donates its input buffers: a buffer two variables share (G_ema starts as
            values = []       # G) is given to it as two copies
            for var in variables:
                value = var.value
                values.append(jnp.copy(value) if id(value) in seen else value)
                seen.add(id(value))
            return values
        p = self.augment.p.value if self.augment is not None else jnp.zeros((), jnp.float32)
        return StepState(read(self.G.variables), read(self.D.variables), read(self.G_ema.variables),
                         read(self.g_opt.variables), read(self.d_opt.variables), jnp.asarray(pl_mean, jnp.float32),
                         jnp.copy(p))

    def assign(self, state):
        """Write a state's values back into the Keras variables (for snapshots and checkpoints)."""
        for variables, values in ((self.G.variables, state.G), (self.D.variables, state.D),
                                  (self.G_ema.variables, state.G_ema), (self.g_opt.variables, state.g_opt),
                                  (self.d_opt.variables, state.d_opt)):
            for var, value in zip(variables, values, strict=True):
                var.assign(value)

    def __call__(self, state, reals, step, key):
        """One iteration: (new state, {name: scalar} of global-batch means). reals: [B, X, Y, Z, C] or (volumes,
        labels [B, L]); step: the 0-based step (which lazy phases run); key: the run's PRNG key."""
        phases = regularisation_due(self.cfg, step)
        if phases not in self._functions:
            self._functions[phases] = jax.jit(lambda s, r, k: self._step(s, r, k, *phases), donate_argnums=0)
        return self._functions[phases](state, reals, jax.random.fold_in(key, step))

    # --- the pure step ---
    def _step(self, state, reals, key, g_reg, d_reg):
        reals, real_labels = reals if isinstance(reals, tuple) else (reals, None)
        stats = {}
        state, out = self._g_main(state, jax.random.fold_in(key, G_MAIN))
        stats.update(out)
        if g_reg:
            state, out = self._g_reg(state, jax.random.fold_in(key, G_REG), float(self.cfg.g_reg_interval))
            stats.update(out)
        state, out = self._d_phase(state, reals, real_labels, jax.random.fold_in(key, D_MAIN), main=True,
                                   reg=has_d_reg(self.cfg) and self.cfg.d_reg_interval is None, scale=1.0)
        stats.update(out)
        if d_reg:
            state, out = self._d_phase(state, reals, real_labels, jax.random.fold_in(key, D_REG), main=False,
                                       reg=True, scale=float(self.cfg.d_reg_interval))
            stats.update(out)
        state = self._update_ema(state)
        stats["pl_mean"] = state.pl_mean
        return state, stats

    def _scope(self, state, G=None, D=None):
        """A StatelessScope reading the state's values (G's or D's replaced by the traced ones given)."""
        mapping = list(zip(self.G.variables, state.G if G is None else G, strict=True))
        mapping += list(zip(self.D.variables, state.D if D is None else D, strict=True))
        if self.augment is not None:
            mapping.append((self.augment.p, state.aug_p))
        return keras.StatelessScope(state_mapping=mapping)

    def _merge(self, variables, values, scope):
        """values with those the scope assigned (w_avg) put in."""
        return [scope.get_current_value(v) if scope.get_current_value(v) is not None else value
                for v, value in zip(variables, values, strict=True)]

    def _constrained(self, x):
        return x if self.data_sharding is None else jax.lax.with_sharding_constraint(x, self.data_sharding)

    def _latents(self, rand, n):
        """(z [n, latent_size], labels [n, L] drawn from the dataset's, or None)."""
        z = self._constrained(rand.normal((n, self.G.latent_size)))
        if self.label_table is None:
            return z, None
        rows = jax.random.randint(rand.next_seed(), (n,), 0, self.label_table.shape[0])
        return z, self._constrained(self.label_table[rows])

    def _generate(self, z, labels, rand, checkpoint=None):
        """(ws with w_avg update and style mixing, volumes with random noise): the training forward pass."""
        ws = self.G.training_styles(z, labels, rng=rand)
        noise = None if self.cfg.no_noise else [rand.normal((z.shape[0],) + tuple(shape[1:]))
                                                for shape in self.G.synthesis.noise_shapes]
        return ws, self.G.synthesis(ws, noise_mode="random", noise=noise, checkpoint=checkpoint)

    def _discriminate(self, volumes, labels, rand, tag, checkpoint=None):
        if self.augment is not None:
            volumes = self.augment(volumes, rand.child(tag).seed)
        return self.D(volumes, labels, checkpoint=checkpoint)

    def _apply(self, optimizer, grads, values, optimizer_values):
        return optimizer.stateless_apply(optimizer_values, grads, values)

    def _split(self, model):
        """Positions of a model's trainable variables in model.variables."""
        trainable = {id(v) for v in model.trainable_variables}
        return [i for i, v in enumerate(model.variables) if id(v) in trainable]

    def _g_main(self, state, key):
        rand = StatelessRandom(key)
        z, labels = self._latents(rand, self.batch)
        pl = (self._latents(rand, self.pl_batch), self._pl_probe(rand)) if self.g_combined else None
        index = self._split(self.G)

        def loss_of(trainable):
            values = _with(state.G, index, trainable)
            with self._scope(state, G=values) as scope:
                _, fake = self._generate(z, labels, rand)
                logits = self._discriminate(fake, labels, rand, AUGMENT_G_FAKES)
                loss = ops.mean(losses.g_nonsaturating(logits))
                out, pl_mean = {"loss/G": loss}, state.pl_mean
                if pl is not None:
                    reg, pl_mean = self._path_length(pl[0], pl[1], rand, state.pl_mean, 1.0)
                    out.update(reg)
                    loss = loss + reg["loss/G_reg"]
                g_values = self._merge(self.G.variables, values, scope)
            return loss, (g_values, pl_mean, out)
        (_, (g_values, pl_mean, out)), grads = jax.value_and_grad(loss_of, has_aux=True)(_take(state.G, index))
        trainable, g_opt = self._apply(self.g_opt, grads, _take(state.G, index), state.g_opt)
        return dataclasses.replace(state, G=_with(g_values, index, trainable), g_opt=g_opt, pl_mean=pl_mean), out

    def _pl_probe(self, rand):
        shape = (self.pl_batch, *self.G.img_shape, self.G.num_channels)
        return self._constrained(rand.normal(shape) * losses.path_length_scale(shape))

    def _path_length(self, latents, probe, rand, pl_mean, scale):
        """({loss/G_reg, pl_length}, updated pl_mean): the path-length penalty of the batch `latents`."""
        z, labels = latents
        ws = self.G.training_styles(z, labels, rng=rand)
        noise = None if self.cfg.no_noise else [rand.normal((z.shape[0],) + tuple(shape[1:]))
                                                for shape in self.G.synthesis.noise_shapes]

        def probed(ws):
            fake = self.G.synthesis(ws, noise_mode="random", noise=noise, checkpoint=False)
            return ops.sum(ops.cast(fake, "float32") * probe)
        lengths = losses.path_lengths(jax.grad(probed)(ws))
        new_mean = jax.lax.stop_gradient(losses.updated_pl_mean(pl_mean, ops.mean(lengths), self.cfg.pl_decay))
        penalty = losses.path_length_penalty(lengths, new_mean, self.cfg.pl_weight)
        return {"loss/G_reg": ops.mean(penalty * scale), "pl_length": ops.mean(jax.lax.stop_gradient(lengths))}, \
            new_mean

    def _g_reg(self, state, key, scale):
        rand = StatelessRandom(key)
        latents, probe = self._latents(rand, self.pl_batch), self._pl_probe(rand)
        index = self._split(self.G)

        def loss_of(trainable):
            values = _with(state.G, index, trainable)
            with self._scope(state, G=values) as scope:
                out, pl_mean = self._path_length(latents, probe, rand, state.pl_mean, scale)
                g_values = self._merge(self.G.variables, values, scope)
            return out["loss/G_reg"], (g_values, pl_mean, out)
        (_, (g_values, pl_mean, out)), grads = jax.value_and_grad(loss_of, has_aux=True)(_take(state.G, index))
        trainable, g_opt = self._apply(self.g_opt, grads, _take(state.G, index), state.g_opt)
        return dataclasses.replace(state, G=_with(g_values, index, trainable), g_opt=g_opt, pl_mean=pl_mean), out

    def _d_phase(self, state, reals, real_labels, key, main, reg, scale):
        """D logistic loss and/or R1 (on reals) / R2 (on fakes) penalty, one optimizer step."""
        r1 = self.cfg.d_loss == "logistic_r1"
        rand = StatelessRandom(key)
        fake, fake_labels, g_values = None, None, state.G
        if main or not r1:  # R1 alone looks at reals only: no generator pass (nor w_avg update)
            z, fake_labels = self._latents(rand, self.batch)
            with self._scope(state) as scope:
                _, fake = self._generate(z, fake_labels, rand)
                g_values = self._merge(self.G.variables, state.G, scope)
            fake = jax.lax.stop_gradient(fake)
        reals = ops.cast(reals, "float32")
        index = self._split(self.D)

        def loss_of(trainable):
            with self._scope(state, G=g_values, D=_with(state.D, index, trainable)):
                checkpoint = False if reg else None
                out, total = {}, 0.0
                if main:
                    real_logits = self._discriminate(reals, real_labels, rand, AUGMENT_D_REALS, checkpoint)
                    fake_logits = self._discriminate(fake, fake_labels, rand, AUGMENT_D_FAKES, checkpoint)
                    out["loss/D"] = total = ops.mean(losses.d_logistic(real_logits, fake_logits))
                    out["D/real"] = ops.mean(ops.cast(real_logits, "float32"))
                    out["D/fake"] = ops.mean(ops.cast(fake_logits, "float32"))
                    if self.augment is not None:  # ADA's overfitting heuristic r_t = E[sign(D(reals))]
                        out["aug/rt"] = ops.mean(ops.sign(ops.cast(real_logits, "float32")))
                if reg:
                    probed, labels, tag = (reals, real_labels, AUGMENT_D_REALS) if r1 else \
                        (fake, fake_labels, AUGMENT_D_FAKES)

                    def logit_sum(volumes):
                        return ops.sum(ops.cast(self._discriminate(volumes, labels, rand, tag, False), "float32"))
                    penalty = losses.gradient_penalty(jax.grad(logit_sum)(probed), self.cfg.d_gamma)
                    out["loss/D_reg"] = ops.mean(penalty * scale)
                    total = total + out["loss/D_reg"]
            return total, out
        (_, out), grads = jax.value_and_grad(loss_of, has_aux=True)(_take(state.D, index))
        trainable, d_opt = self._apply(self.d_opt, grads, _take(state.D, index), state.d_opt)
        return dataclasses.replace(state, G=g_values, D=_with(state.D, index, trainable), d_opt=d_opt), out

    def _update_ema(self, state):
        trainable = {id(v) for v in self.G.trainable_variables}
        ema = [g + (e - g) * self.beta if id(v) in trainable else g
               for v, g, e in zip(self.G.variables, state.G, state.G_ema, strict=True)]
        return dataclasses.replace(state, G_ema=ema)


def _take(values, index):
    return [values[i] for i in index]


def _with(values, index, replacements):
    """values with positions `index` replaced by `replacements` (in order)."""
    out = list(values)
    for i, value in zip(index, replacements, strict=True):
        out[i] = value
    return out
