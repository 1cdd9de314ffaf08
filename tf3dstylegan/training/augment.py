"""Differentiable 3D adaptive discriminator augmentation (ADA) for volumes [B, X, Y, Z, C] in [-1, 1].

As StyleGAN2-ADA (Karras et al. 2020) in 2D: every image D sees (reals and fakes) goes through the pipe,
and each transform is applied to each sample independently with probability p. While p stays below ~0.8
the augmented distributions stay distinct, so G does not learn the augmentations ("non-leaking"). The
geometric transforms compose into one affine map per sample, applied by trilinear resampling with mirror
reflection at the borders; the intensity transforms follow. All draws are stateless, from a seed per call,
so a training step stays reproducible after a resume. Gradients flow to the input volumes (any order).

Transforms (in the order applied; ADA's strengths where ADA has the transform):
  xflip       left-right flip (axis X), half of the time (only on request: brains are not symmetric)
  xint        integer translation, uniform within +-12.5% of each axis
  scale       isotropic scaling, log2 s ~ N(0, 0.2)
  rotate      a rotation about each axis (each with probability p), angle uniform in [-180, 180) degrees
  aniso       anisotropic scaling, log2 s_i ~ N(0, 0.2) centred over the three axes (volume kept)
  xfrac       fractional translation, N(0, 12.5%) of each axis
  bias_field  the signal (x + 1) / 2 times a smooth field exp(quadratic polynomial), MRI's bias artefact
  gamma       the signal (x + 1) / 2 to the power g, log2 g ~ N(0, 0.25)
  brightness  x + b, b ~ N(0, 0.2)
  contrast    x * c, log2 c ~ N(0, 0.5)
  noise       x + N(0, s^2) per voxel, s ~ |N(0, 0.1^2)| per sample
  cutout      a box half the size of each axis, at a uniform centre, set to 0
Pipelines are strings of letters (any combination): b = xint, g = scale rotate aniso xfrac, c = brightness
contrast gamma, f = bias_field, n = noise, o = cutout, x = xflip; or comma-separated transform names.
"""
import math

import tensorflow as tf

from tf3dstylegan.ops.resample3d import affine_resample

TRANSFORMS = ("xflip", "xint", "scale", "rotate", "aniso", "xfrac",
              "bias_field", "gamma", "brightness", "contrast", "noise", "cutout")
GEOMETRIC = TRANSFORMS[:6]
LETTERS = {"b": ("xint",), "g": ("scale", "rotate", "aniso", "xfrac"), "c": ("brightness", "contrast", "gamma"),
           "f": ("bias_field",), "n": ("noise",), "o": ("cutout",), "x": ("xflip",)}
PIPELINES = ("bgc", "bg", "bgcf", "bgcfn", "bgcfno", "b", "g", "c", "f", "n", "o")  # named for the CLI
MODES = ("ada", "fixed", "none")
STRENGTHS = dict(xint_max=0.125, scale_std=0.2, rotate_max=1.0, aniso_std=0.2, xfrac_std=0.125,
                 bias_field_std=0.3, gamma_std=0.25, brightness_std=0.2, contrast_std=0.5, noise_std=0.1,
                 cutout_size=0.5)
GAMMA_EPS = 0.05  # offset that keeps the gamma curve's slope finite at 0


def parse_pipeline(spec):
    """Transform names (in TRANSFORMS order) of a pipeline: letters ('bgc', 'bgcx') or 'name,name'."""
    if "," in spec or spec in TRANSFORMS:
        names = [name.strip() for name in spec.split(",") if name.strip()]
        unknown = [name for name in names if name not in TRANSFORMS]
    else:
        unknown = [letter for letter in spec if letter not in LETTERS]
        names = [name for letter in spec if letter in LETTERS for name in LETTERS[letter]]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"augmentation pipeline {spec!r}: use letters of {''.join(LETTERS)} once each "
                         f"(e.g. {', '.join(PIPELINES[:5])}) or transform names from {', '.join(TRANSFORMS)}")
    return tuple(name for name in TRANSFORMS if name in names)


# --- geometry: [B, 4, 4] homogeneous maps of centred voxel coordinates ---
def _matrix(rows, batch):
    """[B, 4, 4] from 4 rows of 4 entries, each a Python float or a [B] tensor."""
    entries = [tf.fill([batch], float(e)) if isinstance(e, (int, float)) else e for row in rows for e in row]
    return tf.reshape(tf.stack(entries, axis=-1), [batch, 4, 4])


def translation(t):
    """t [B, 3] voxels -> [B, 4, 4]."""
    batch = tf.shape(t)[0]
    return _matrix([[1, 0, 0, t[:, 0]], [0, 1, 0, t[:, 1]], [0, 0, 1, t[:, 2]], [0, 0, 0, 1]], batch)


def scaling(s):
    """s [B, 3] factors per axis -> [B, 4, 4]."""
    return tf.linalg.diag(tf.concat([s, tf.ones_like(s[:, :1])], axis=1))


def rotation(theta, axis):
    """theta [B] radians about axis 0, 1 or 2 (right-handed) -> [B, 4, 4]."""
    i, j = [a for a in range(3) if a != axis]
    rows = [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)]
    cos, sin = tf.cos(theta), tf.sin(theta)
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = cos, -sin, sin, cos
    return _matrix(rows, tf.shape(theta)[0])


def log_bias_field(coeffs, shape):
    """[B, X, Y, Z, 1] quadratic polynomial with coeffs [B, 9] of x, y, z, x², y², z² (centred), xy, xz, yz
    on coordinates in [-1, 1]; built from 1-D and 2-D pieces (no full-size basis)."""
    x, y, z = [tf.linspace(-1.0, 1.0, n) for n in shape]
    c = [coeffs[:, k, None] for k in range(9)]                                              # [B, 1] each

    def centred_square(t):
        return t * t - tf.reduce_mean(t * t)
    along_x, along_y, along_z = (c[k] * t + c[k + 3] * centred_square(t) for k, t in enumerate((x, y, z)))
    xy = c[6][:, :, None] * x[:, None] * y[None, :]                                         # [B, X, Y]
    xz = c[7][:, :, None] * x[:, None] * z[None, :]                                         # [B, X, Z]
    yz = c[8][:, :, None] * y[:, None] * z[None, :]                                         # [B, Y, Z]
    field = (along_x[:, :, None, None] + along_y[:, None, :, None] + along_z[:, None, None, :]
             + xy[:, :, :, None] + xz[:, :, None, :] + yz[:, None, :, :])
    return field[..., None]


def _where_any(flags, transform, x):
    """transform(x) for the samples where flags [B], x elsewhere; no work when no flag is set."""
    return tf.cond(tf.reduce_any(flags),
                   lambda: tf.where(tf.reshape(flags, [-1, 1, 1, 1, 1]), transform(), x), lambda: x)


def _exp2(x):
    return tf.pow(2.0, x)


class _Draws:
    """Independent stateless draws from one seed: draw k uses fold_in(seed, k)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def seed_next(self):
        self.count += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.count)

    def uniform(self, shape):
        return tf.random.stateless_uniform(shape, self.seed_next())

    def normal(self, shape):
        return tf.random.stateless_normal(shape, self.seed_next())


class AugmentPipe(tf.Module):
    """The augmentation pipe and its probability p (a variable, with ADA's r_t accumulators).

    Create it under the training strategy's scope. `pipe(volumes, seed)` augments (replica context);
    `pipe.update(rt, step, batch)` applies ADA's heuristic after each step (cross-replica context).
    mode "ada" adjusts p toward `target`, "fixed" keeps p constant."""

    def __init__(self, pipeline="bgc", mode="ada", p=0.0, target=0.6, interval=4, kimg=500.0, strengths=None):
        super().__init__(name="augment_pipe")
        if mode not in MODES[:2]:
            raise ValueError(f"augmentation mode {mode!r}: expected 'ada' or 'fixed' ('none' means no pipe)")
        if not 0.0 <= p <= 1.0 or not 0.0 < target <= 1.0 or interval < 1 or kimg <= 0:
            raise ValueError(f"augmentation: need 0 <= p <= 1 (got {p}), 0 < target <= 1 (got {target}), "
                             f"interval >= 1 (got {interval}), kimg > 0 (got {kimg})")
        unknown = set(strengths or {}) - set(STRENGTHS)
        if unknown:
            raise ValueError(f"augmentation strengths: unknown {sorted(unknown)}; known {sorted(STRENGTHS)}")
        self.pipeline, self.transforms, self.mode = pipeline, parse_pipeline(pipeline), mode
        self.target, self.interval, self.kimg = float(target), int(interval), float(kimg)
        self.strengths = dict(STRENGTHS, **(strengths or {}))
        sync = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.p = tf.Variable(float(p), dtype=tf.float32, name="augment_p", **sync)
        self.rt_sum = tf.Variable(0.0, dtype=tf.float32, name="augment_rt_sum", **sync)
        self.rt_count = tf.Variable(0, dtype=tf.int64, name="augment_rt_count", **sync)

    @tf.autograph.experimental.do_not_convert
    def __call__(self, images, seed):
        """images [B, X, Y, Z, C] (any float dtype; computed in float32), seed [2] int -> augmented images."""
        x = tf.cast(images, tf.float32)
        draws, batch, shape = _Draws(seed), tf.shape(x)[0], tuple(x.shape[1:4])
        p = tf.cast(self.p, tf.float32)
        has = self.transforms.__contains__
        if any(map(has, GEOMETRIC)):
            matrix, moved = self._geometry(draws, batch, p, shape)
            x = affine_resample(x, matrix, moved)

        def chance():
            return draws.uniform([batch]) < p
        if has("bias_field"):
            on = chance()
            coeffs = draws.normal([batch, 9]) * (self.strengths["bias_field_std"] / 3.0)
            x = _where_any(on, lambda: x + (x + 1.0) * tf.math.expm1(log_bias_field(coeffs, shape)), x)
        if has("gamma"):
            on = chance()
            gamma = tf.reshape(_exp2(draws.normal([batch]) * self.strengths["gamma_std"]), [-1, 1, 1, 1, 1])
            x = _where_any(on, lambda: gamma_curve(x, gamma), x)
        if has("brightness") or has("contrast"):
            bright = _where_on(draws, batch, p, has("brightness"),
                               lambda: draws.normal([batch]) * self.strengths["brightness_std"], 0.0)
            contrast = _where_on(draws, batch, p, has("contrast"),
                                 lambda: _exp2(draws.normal([batch]) * self.strengths["contrast_std"]), 1.0)
            on = (bright[1] | contrast[1])
            x = _where_any(on, lambda: (x + tf.reshape(bright[0], [-1, 1, 1, 1, 1]))
                           * tf.reshape(contrast[0], [-1, 1, 1, 1, 1]), x)
        if has("noise"):
            on, noise_seed = chance(), draws.seed_next()
            sigma = tf.reshape(tf.abs(draws.normal([batch])) * self.strengths["noise_std"], [-1, 1, 1, 1, 1])
            x = _where_any(on, lambda: x + tf.random.stateless_normal(tf.shape(x), noise_seed) * sigma, x)
        if has("cutout"):
            on, centre = chance(), draws.uniform([batch, 3])
            x = _where_any(on, lambda: x * (1.0 - cutout_box(centre, self.strengths["cutout_size"], shape)), x)
        return tf.cast(x, images.dtype)

    @tf.autograph.experimental.do_not_convert
    def _geometry(self, draws, batch, p, shape):
        """(matrix [B, 4, 4] from centred output to centred input voxel coordinates, moved [B] bool)."""
        s, sizes = self.strengths, tf.constant(shape, tf.float32)
        matrix, moved = tf.eye(4, batch_shape=[batch]), tf.zeros([batch], tf.bool)

        def chance():
            return draws.uniform([batch]) < p
        if "xflip" in self.transforms:
            on = chance() & (draws.uniform([batch]) < 0.5)
            matrix = matrix @ scaling(tf.stack([tf.where(on, -1.0, 1.0), tf.ones([batch]), tf.ones([batch])], 1))
            moved |= on
        if "xint" in self.transforms:
            on = chance()
            shift = tf.round((draws.uniform([batch, 3]) * 2.0 - 1.0) * s["xint_max"] * sizes)
            matrix, moved = matrix @ translation(-tf.where(on[:, None], shift, 0.0)), moved | on
        if "scale" in self.transforms:
            on = chance()
            factor = tf.where(on, _exp2(draws.normal([batch]) * s["scale_std"]), 1.0)
            matrix, moved = matrix @ scaling(tf.tile(1.0 / factor[:, None], [1, 3])), moved | on
        if "rotate" in self.transforms:
            for axis in range(3):
                on = chance()
                theta = (draws.uniform([batch]) * 2.0 - 1.0) * math.pi * s["rotate_max"]
                matrix, moved = matrix @ rotation(-tf.where(on, theta, 0.0), axis), moved | on
        if "aniso" in self.transforms:
            on = chance()
            log2 = draws.normal([batch, 3]) * s["aniso_std"]
            factor = tf.where(on[:, None], _exp2(log2 - tf.reduce_mean(log2, axis=1, keepdims=True)), 1.0)
            matrix, moved = matrix @ scaling(1.0 / factor), moved | on
        if "xfrac" in self.transforms:
            on = chance()
            shift = draws.normal([batch, 3]) * s["xfrac_std"] * sizes
            matrix, moved = matrix @ translation(-tf.where(on[:, None], shift, 0.0)), moved | on
        return matrix, moved

    def update(self, real_sign_mean, step, batch_size):
        """ADA's heuristic after training step `step` (0-based; cross-replica context).

        Accumulates real_sign_mean = E[sign(D(augmented reals))] of the step; after every `interval` steps
        moves p by sign(r_t - target) * batch * interval / (kimg * 1000), r_t the interval's mean, clipped
        to [0, 1]. Returns r_t when p was adjusted, else None. Fixed mode: p stays; returns None."""
        if self.mode != "ada":
            return None
        self.rt_sum.assign_add(tf.cast(real_sign_mean, tf.float32))
        self.rt_count.assign_add(1)
        if (int(step) + 1) % self.interval:
            return None
        rt = self.rt_sum / tf.cast(self.rt_count, tf.float32)
        adjust = tf.sign(rt - self.target) * (batch_size * self.interval) / (self.kimg * 1000.0)
        self.p.assign(tf.clip_by_value(self.p + adjust, 0.0, 1.0))
        self.rt_sum.assign(0.0)
        self.rt_count.assign(0)
        return rt


def _where_on(draws, batch, p, enabled, value, neutral):
    """(per-sample parameter [B]: value() with probability p else neutral, applied [B] bool)."""
    if not enabled:
        return tf.fill([batch], neutral), tf.zeros([batch], tf.bool)
    on = draws.uniform([batch]) < p
    return tf.where(on, value(), neutral), on


def gamma_curve(x, gamma):
    """Signal u = (x + 1) / 2 in [0, 1] -> ((u + e)^g - e^g) / ((1 + e)^g - e^g); linear beyond [0, 1]."""
    u = (x + 1.0) * 0.5
    inside = tf.clip_by_value(u, 0.0, 1.0)
    eps = GAMMA_EPS
    curve = (tf.pow(inside + eps, gamma) - eps ** gamma) / ((1.0 + eps) ** gamma - eps ** gamma)
    return 2.0 * (curve + u - inside) - 1.0


def cutout_box(centre, size, shape):
    """[B, X, Y, Z, 1] 1 inside the box of `size` (fraction of each axis) at `centre` [B, 3] in [0, 1], else 0."""
    inside = []
    for axis, n in enumerate(shape):
        position = (tf.range(n, dtype=tf.float32) + 0.5) / n
        inside.append(tf.cast(tf.abs(position[None] - centre[:, axis:axis + 1]) < size / 2.0, tf.float32))
    box = inside[0][:, :, None, None] * inside[1][:, None, :, None] * inside[2][:, None, None, :]
    return box[..., None]


def build_augment(mode="none", pipeline="bgc", p=None, target=0.6, interval=4, kimg=500.0, strengths=None):
    """An AugmentPipe for `--aug ada|fixed|none` (None for 'none'); fixed needs p, ada starts at p or 0."""
    if mode not in MODES:
        raise ValueError(f"augmentation mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "none":
        return None
    if mode == "fixed" and p is None:
        raise ValueError("augmentation mode 'fixed' needs p (the constant augmentation probability)")
    return AugmentPipe(pipeline, mode, 0.0 if p is None else p, target, interval, kimg, strengths)
