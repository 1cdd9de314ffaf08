"""Differentiable 3D adaptive discriminator augmentation (ADA) for volumes [B, X, Y, Z, C] in [-1, 1].

As StyleGAN2-ADA (Karras et al. 2020) in 2D: every image D sees (reals and fakes) goes through the pipe,
and each transform is applied to each sample independently with probability p. While p stays below ~0.8
the augmented distributions stay distinct, so G does not learn the augmentations ("non-leaking"). The
geometric transforms compose into one affine map per sample, applied with mirror reflection at the borders: by
trilinear resampling where only flips and integer translations are on (exact: they land on voxels), else without
aliasing, as ADA does (2x upsampling and downsampling through a lowpass around the trilinear resampling,
`ops.resample3d.antialiased_resample`), so that the transforms leak no stripes into G. The intensity transforms
follow. All draws are stateless, from a seed per call (`tf3dstylegan.backend.StatelessRandom`), so a training step
stays reproducible after a resume. Gradients flow to the input volumes (any order).

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

import keras
from keras import ops

from tf3dstylegan import backend
from tf3dstylegan.ops.resample3d import affine_resample, antialiased_resample

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
    entries = [ops.full((batch,), float(e)) if isinstance(e, (int, float)) else e for row in rows for e in row]
    return ops.reshape(ops.stack(entries, axis=-1), (batch, 4, 4))


def translation(t):
    """t [B, 3] voxels -> [B, 4, 4]."""
    return _matrix([[1, 0, 0, t[:, 0]], [0, 1, 0, t[:, 1]], [0, 0, 1, t[:, 2]], [0, 0, 0, 1]], ops.shape(t)[0])


def scaling(s):
    """s [B, 3] factors per axis -> [B, 4, 4]."""
    return ops.eye(4)[None] * ops.concatenate([s, ops.ones_like(s[:, :1])], axis=1)[:, None, :]


def rotation(theta, axis):
    """theta [B] radians about axis 0, 1 or 2 (right-handed) -> [B, 4, 4]."""
    i, j = [a for a in range(3) if a != axis]
    rows = [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)]
    cos, sin = ops.cos(theta), ops.sin(theta)
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = cos, -sin, sin, cos
    return _matrix(rows, ops.shape(theta)[0])


def log_bias_field(coeffs, shape):
    """[B, X, Y, Z, 1] quadratic polynomial with coeffs [B, 9] of x, y, z, x², y², z² (centred), xy, xz, yz
    on coordinates in [-1, 1]; built from 1-D and 2-D pieces (no full-size basis)."""
    x, y, z = [ops.linspace(-1.0, 1.0, n) for n in shape]
    c = [coeffs[:, k, None] for k in range(9)]                                              # [B, 1] each

    def centred_square(t):
        return t * t - ops.mean(t * t)
    along_x, along_y, along_z = (c[k] * t + c[k + 3] * centred_square(t) for k, t in enumerate((x, y, z)))
    xy = c[6][:, :, None] * x[:, None] * y[None, :]                                         # [B, X, Y]
    xz = c[7][:, :, None] * x[:, None] * z[None, :]                                         # [B, X, Z]
    yz = c[8][:, :, None] * y[:, None] * z[None, :]                                         # [B, Y, Z]
    field = (along_x[:, :, None, None] + along_y[:, None, :, None] + along_z[:, None, None, :]
             + xy[:, :, :, None] + xz[:, :, None, :] + yz[:, None, :, :])
    return field[..., None]


def _per_sample(values):
    """[B] -> [B, 1, 1, 1, 1], to scale volumes sample by sample."""
    return ops.reshape(values, (-1, 1, 1, 1, 1))


def _where_any(flags, transform, x):
    """transform(x) for the samples where flags [B], x elsewhere; no work when no flag is set."""
    return ops.cond(ops.any(flags), lambda: ops.where(_per_sample(flags), transform(), x), lambda: x)


def _exp2(x):
    return ops.power(2.0, x)


class AugmentPipe:
    """The augmentation pipe and its probability p (a Keras variable, with ADA's r_t accumulators).

    Create it under the training strategy's scope (TensorFlow). `pipe(volumes, seed)` augments (a replica's part
    of the batch); `pipe.update(rt, step, batch)` applies ADA's heuristic after each step (on the host; the
    cross-replica context on TensorFlow). mode "ada" adjusts p toward `target`, "fixed" keeps p constant."""

    def __init__(self, pipeline="bgc", mode="ada", p=0.0, target=0.6, interval=4, kimg=500.0, strengths=None):
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
        sync = dict(trainable=False, synchronization="on_write", aggregation="only_first_replica")
        self.p = keras.Variable(float(p), dtype="float32", name="augment_p", **sync)
        self.rt_sum = keras.Variable(0.0, dtype="float32", name="augment_rt_sum", **sync)
        self.rt_count = keras.Variable(0, dtype="int64", name="augment_rt_count", **sync)

    @property
    def variables(self):
        """{name: variable} of p and the r_t accumulators: what a checkpoint keeps."""
        return {"p": self.p, "rt_sum": self.rt_sum, "rt_count": self.rt_count}

    def __call__(self, images, seed):
        """images [B, X, Y, Z, C] (any float dtype; computed in float32), seed: the backend's stateless seed (an int
        [2] tensor on TensorFlow, a PRNG key on JAX) -> augmented images."""
        x = ops.cast(images, "float32")
        draws, batch, shape = backend.StatelessRandom(seed), ops.shape(x)[0], tuple(x.shape[1:4])
        p = ops.cast(self.p, "float32")
        has, s = self.transforms.__contains__, self.strengths
        if any(map(has, GEOMETRIC)):
            matrix, on_grid, off_grid = self._geometry(draws, batch, p, shape)
            x = affine_resample(x, matrix, ops.logical_and(on_grid, ops.logical_not(off_grid)))  # exact
            x = antialiased_resample(x, matrix, off_grid)

        def chance():
            return draws.uniform((batch,)) < p
        if has("bias_field"):
            on = chance()
            coeffs = draws.normal((batch, 9)) * (s["bias_field_std"] / 3.0)
            x = _where_any(on, lambda: x + (x + 1.0) * ops.expm1(log_bias_field(coeffs, shape)), x)
        if has("gamma"):
            on = chance()
            gamma = _per_sample(_exp2(draws.normal((batch,)) * s["gamma_std"]))
            x = _where_any(on, lambda: gamma_curve(x, gamma), x)
        if has("brightness") or has("contrast"):
            bright = _where_on(draws, batch, p, has("brightness"),
                               lambda: draws.normal((batch,)) * s["brightness_std"], 0.0)
            contrast = _where_on(draws, batch, p, has("contrast"),
                                 lambda: _exp2(draws.normal((batch,)) * s["contrast_std"]), 1.0)
            on = bright[1] | contrast[1]
            x = _where_any(on, lambda: (x + _per_sample(bright[0])) * _per_sample(contrast[0]), x)
        if has("noise"):
            on, noise_draws = chance(), draws.child(0)
            sigma = _per_sample(ops.abs(draws.normal((batch,))) * s["noise_std"])
            x = _where_any(on, lambda: x + noise_draws.normal(ops.shape(x)) * sigma, x)
        if has("cutout"):
            on, centre = chance(), draws.uniform((batch, 3))
            x = _where_any(on, lambda: x * (1.0 - cutout_box(centre, s["cutout_size"], shape)), x)
        return ops.cast(x, images.dtype)

    def _geometry(self, draws, batch, p, shape):
        """(matrix [B, 4, 4] from centred output to centred input voxel coordinates, on_grid [B] bool: flipped or
        shifted by whole voxels, off_grid [B] bool: moved by any other transform)."""
        s, sizes = self.strengths, ops.convert_to_tensor(shape, "float32")
        matrix, moved = ops.tile(ops.eye(4)[None], (batch, 1, 1)), ops.zeros((batch,), "bool")

        def chance():
            return draws.uniform((batch,)) < p

        def then(transform, on):
            return ops.matmul(matrix, transform), moved | on
        if "xflip" in self.transforms:
            on = chance() & (draws.uniform((batch,)) < 0.5)
            ones = ops.ones((batch,))
            matrix, moved = then(scaling(ops.stack([ops.where(on, -1.0, 1.0), ones, ones], axis=1)), on)
        if "xint" in self.transforms:
            on = chance()
            shift = ops.round((draws.uniform((batch, 3)) * 2.0 - 1.0) * s["xint_max"] * sizes)
            matrix, moved = then(translation(-ops.where(on[:, None], shift, 0.0)), on)
        on_grid, moved = moved, ops.zeros((batch,), "bool")  # from here: moved off the voxel grid
        if "scale" in self.transforms:
            on = chance()
            factor = ops.where(on, _exp2(draws.normal((batch,)) * s["scale_std"]), 1.0)
            matrix, moved = then(scaling(ops.tile(1.0 / factor[:, None], (1, 3))), on)
        if "rotate" in self.transforms:
            for axis in range(3):
                on = chance()
                theta = (draws.uniform((batch,)) * 2.0 - 1.0) * math.pi * s["rotate_max"]
                matrix, moved = then(rotation(-ops.where(on, theta, 0.0), axis), on)
        if "aniso" in self.transforms:
            on = chance()
            log2 = draws.normal((batch, 3)) * s["aniso_std"]
            factor = ops.where(on[:, None], _exp2(log2 - ops.mean(log2, axis=1, keepdims=True)), 1.0)
            matrix, moved = then(scaling(1.0 / factor), on)
        if "xfrac" in self.transforms:
            on = chance()
            shift = draws.normal((batch, 3)) * s["xfrac_std"] * sizes
            matrix, moved = then(translation(-ops.where(on[:, None], shift, 0.0)), on)
        return matrix, on_grid, moved

    def update(self, real_sign_mean, step, batch_size):
        """ADA's heuristic after training step `step` (0-based; on the host).

        Accumulates real_sign_mean = E[sign(D(augmented reals))] of the step; after every `interval` steps
        moves p by sign(r_t - target) * batch * interval / (kimg * 1000), r_t the interval's mean, clipped
        to [0, 1]. Returns r_t when p was adjusted, else None. Fixed mode: p stays; returns None."""
        if self.mode != "ada":
            return None
        self.rt_sum.assign(self.rt_sum + ops.cast(real_sign_mean, "float32"))
        self.rt_count.assign(self.rt_count + 1)
        if (int(step) + 1) % self.interval:
            return None
        rt = self.rt_sum / ops.cast(self.rt_count, "float32")
        adjust = ops.sign(rt - self.target) * (batch_size * self.interval) / (self.kimg * 1000.0)
        self.p.assign(ops.clip(self.p + adjust, 0.0, 1.0))
        self.rt_sum.assign(0.0)
        self.rt_count.assign(0)
        return rt


def _where_on(draws, batch, p, enabled, value, neutral):
    """(per-sample parameter [B]: value() with probability p else neutral, applied [B] bool)."""
    if not enabled:
        return ops.full((batch,), neutral), ops.zeros((batch,), "bool")
    on = draws.uniform((batch,)) < p
    return ops.where(on, value(), neutral), on


def gamma_curve(x, gamma):
    """Signal u = (x + 1) / 2 in [0, 1] -> ((u + e)^g - e^g) / ((1 + e)^g - e^g); linear beyond [0, 1]."""
    u = (x + 1.0) * 0.5
    inside = ops.clip(u, 0.0, 1.0)
    eps = GAMMA_EPS
    curve = (ops.power(inside + eps, gamma) - eps ** gamma) / ((1.0 + eps) ** gamma - eps ** gamma)
    return 2.0 * (curve + u - inside) - 1.0


def cutout_box(centre, size, shape):
    """[B, X, Y, Z, 1] 1 inside the box of `size` (fraction of each axis) at `centre` [B, 3] in [0, 1], else 0."""
    inside = []
    for axis, n in enumerate(shape):
        position = (ops.arange(n, dtype="float32") + 0.5) / n
        inside.append(ops.cast(ops.abs(position[None] - centre[:, axis:axis + 1]) < size / 2.0, "float32"))
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
