"""Projection of a volume into the generator's W (or W+) and noise maps.

As the original: w starts at the mean of 10000 mapped RandomState(123) latents, Adam (0.9, 0.999, 1e-8) with
lr 0.3 ramped up over the first 5% and down (cosine) over the last 25% of the steps, w perturbed by
N(0, 1) * 0.05 * w_std * max(0, 1 - t / 0.75)^2, loss = MSE of (x + 1) * 127.5 at full resolution + MSE of
its 8x8x8 block means, noise maps re-normalised to zero mean / unit std after every step. Changed: the noise
regulariser (built but never added by the original) is added with weight 1e5; W+ is optional; a volume whose
axes are not multiples of 8 gets partial edge blocks (the mean of the voxels they hold). A conditional
generator projects under a known condition: `labels` [L] enter the mapping network for the w statistics
(the starting w and the perturbation's scale); the optimised w then carries the condition. space="z" optimises
the mapping network's input z instead (kept on the sphere of radius sqrt(latent_size) that the mapping's
normalisation sees, so that the condition keeps its trained weight against z), starting from the sampled latent
whose w is nearest the condition's mean w: the projection can then be re-mapped under another condition.
"""
import dataclasses
from typing import Callable, List, Optional

import keras
import numpy as np
from keras import ops

from tf3dstylegan import backend
from tf3dstylegan.conditions import batch_labels
from tf3dstylegan.data.volumes import (WARN_CLIPPED, DataError, check_volume, describe_touching, load_volume,
                                       read_volume)
from tf3dstylegan.metrics.msssim import ssim_and_cs

INITIAL_LR = 0.3
LR_RAMPUP, LR_RAMPDOWN = 0.05, 0.25
INITIAL_NOISE_FACTOR, NOISE_RAMP = 0.05, 0.75
NOISE_REG_WEIGHT = 1e5
W_AVG_SAMPLES, W_AVG_SEED = 10000, 123
DOWNSAMPLE = 8
SPACES = ("w", "z")


@dataclasses.dataclass
class Projection:
    """What `project` returns."""
    w: np.ndarray                 # [1, num_ws, dlatent_size], without the optimisation's perturbation
    noises: List[np.ndarray]      # per style layer [1, x, y, z, 1]
    reconstruction: np.ndarray    # [X, Y, Z, C] in [-1, 1]
    losses: np.ndarray            # [num_steps] total loss of each step
    labels: Optional[np.ndarray] = None  # [L] the condition projected under (conditional generators)
    z: Optional[np.ndarray] = None       # [1, latent_size] the projected latent (space "z"; w is its mapping)


class ProjectionSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The projection's learning rate at optimizer step i of num_steps (t = i / num_steps): a linear ramp-up over
    the first `rampup`, a cosine ramp-down over the last `rampdown`."""

    def __init__(self, num_steps, initial=INITIAL_LR, rampup=LR_RAMPUP, rampdown=LR_RAMPDOWN):
        self.num_steps, self.initial, self.rampup, self.rampdown = num_steps, initial, rampup, rampdown

    def __call__(self, step):
        t = ops.cast(step, "float32") / self.num_steps
        down = 0.5 - 0.5 * ops.cos(np.pi * ops.minimum(1.0, (1.0 - t) / self.rampdown))
        return self.initial * down * ops.minimum(1.0, t / self.rampup)

    def get_config(self):
        return dict(num_steps=self.num_steps, initial=self.initial, rampup=self.rampup, rampdown=self.rampdown)


def w_noise_scale(t, w_std, factor=INITIAL_NOISE_FACTOR, ramp=NOISE_RAMP):
    """Std of the perturbation added to w at progress t."""
    return w_std * factor * max(0.0, 1.0 - t / ramp) ** 2


def sample_latents(G, num_samples=W_AVG_SAMPLES, seed=W_AVG_SEED):
    """The latents [num_samples, latent_size] of the w statistics: RandomState(seed) normals."""
    return np.random.RandomState(seed).randn(num_samples, G.latent_size).astype(np.float32)


def mapped_samples(G, z, labels=None, batch_size=1000):
    """First-layer ws [N, dlatent_size] (float64) of latents z [N, latent_size] under labels [L] (conditional G)."""
    condition = batch_labels(G, labels, 1)                                            # [1, L] or None
    chunks = [z[i:i + batch_size] for i in range(0, len(z), batch_size)]
    return np.concatenate([ops.convert_to_numpy(G.mapping(
        chunk, None if condition is None else np.repeat(condition, len(chunk), axis=0)))[:, 0]
        for chunk in chunks]).astype(np.float64)


def w_statistics(G, num_samples=W_AVG_SAMPLES, seed=W_AVG_SEED, batch_size=1000, labels=None):
    """(w_avg [dlatent_size], w_std scalar) of num_samples mapped RandomState(seed) latents (first style layer), under
    the condition labels [L] when G is conditional."""
    w = mapped_samples(G, sample_latents(G, num_samples, seed), labels, batch_size)   # [N, dlatent_size]
    w_avg = w.mean(axis=0)
    w_std = np.sqrt(np.sum((w - w_avg) ** 2) / num_samples)
    return w_avg.astype(np.float32), float(w_std)


def central_latent(G, num_samples=W_AVG_SAMPLES, seed=W_AVG_SEED, labels=None):
    """The sample latent [1, latent_size] whose w (under labels) is nearest the samples' mean w: Z's start."""
    z = sample_latents(G, num_samples, seed)
    w = mapped_samples(G, z, labels)
    return z[np.argmin(np.sum((w - w.mean(axis=0)) ** 2, axis=1))][np.newaxis]


def block_mean(x, factor=DOWNSAMPLE):
    """[B, X, Y, Z, C] -> [B, ceil(X/f), ceil(Y/f), ceil(Z/f), C] means of f^3 blocks (edge blocks: their voxels)."""
    shape = x.shape[1:4]
    padded = [-(-s // factor) * factor for s in shape]
    pad = [[0, 0]] + [[0, p - s] for s, p in zip(shape, padded)] + [[0, 0]]

    def block_sum(v):
        v = ops.pad(v, pad)
        v = ops.reshape(v, (-1, padded[0] // factor, factor, padded[1] // factor, factor,
                            padded[2] // factor, factor, v.shape[-1]))
        return ops.sum(v, axis=(2, 4, 6))

    counts = block_sum(ops.ones((1,) + tuple(shape) + (1,), x.dtype))  # [1, bx, by, bz, 1]
    return block_sum(x) / counts


def noise_regularizer(noises, min_size=10):
    """Sum over maps and scales of squared mean autocorrelations at 1-voxel shifts along x, y, z; each map is
    2x2x2-averaged until its first axis is <= min_size (or an axis is odd). noises: [1, x, y, z, 1] each."""
    loss = 0.0
    for v in noises:
        while True:
            for axis in (1, 2, 3):
                loss += ops.mean(v * ops.roll(v, shift=1, axis=axis)) ** 2
            x, y, z = v.shape[1:4]
            if x <= min_size or x % 2 or y % 2 or z % 2:
                break
            v = ops.mean(ops.reshape(v, (1, x // 2, 2, y // 2, 2, z // 2, 2, 1)), axis=(2, 4, 6))
    return loss


def check_target(G, target):
    """A finite target [X, Y, Z] or [X, Y, Z, C] on G's grid as float32 [1, X, Y, Z, C]; ValueError otherwise."""
    target = np.asarray(target, np.float32)
    if target.ndim == 3:
        target = target[..., np.newaxis]
    expected = tuple(G.img_shape) + (G.num_channels,)
    if target.shape != expected:
        raise ValueError(f"target shape {target.shape} is not the network's {expected}")
    if not np.all(np.isfinite(target)):
        raise ValueError(f"target contains {int(np.sum(~np.isfinite(target)))} NaN or Inf values")
    return target[np.newaxis]


def project(G, target, num_steps=1000, w_plus=False, seed=0, noise_reg_weight=NOISE_REG_WEIGHT,
            w_avg_samples=W_AVG_SAMPLES, on_step: Optional[Callable] = None, labels=None, space="w") -> Projection:
    """Fit w (W, or W+ with w_plus; or z with space="z") and the noise maps so that G.synthesis reproduces target
    ([-1, 1]).

    labels: the target's condition [L] (required by a conditional G). on_step(step, num_steps, loss) is
    called after every step (progress display)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    if space == "z" and w_plus:
        raise ValueError("W+ is a space of ws: project in space 'w' with w_plus, or in space 'z' without it")
    condition = batch_labels(G, labels, 1)                                            # [1, L] or None
    label = None if condition is None else condition[0]
    target = ops.convert_to_tensor(check_target(G, target))
    target_big = (target + 1.0) * 127.5                                  # [1, X, Y, Z, C]
    target_small = block_mean(target_big)
    w_avg, w_std = w_statistics(G, w_avg_samples, labels=label)
    num_w = G.num_ws if w_plus else 1
    if space == "z":
        latent = keras.Variable(_on_sphere(central_latent(G, w_avg_samples, labels=label)), name="z")  # [1, latent]
        latent_std = 1.0
        mapping_labels = None if condition is None else ops.convert_to_tensor(condition)

        def styles(z):
            return G.mapping(z, mapping_labels)                          # [1, num_ws, dlatent_size]
    else:
        latent = keras.Variable(np.tile(w_avg, [1, num_w, 1]), name="w")  # [1, num_w, dlatent_size]
        latent_std = w_std

        def styles(w):
            return ops.tile(w, (1, G.num_ws // num_w, 1))
    rng = np.random.RandomState(seed)
    noise_vars = [keras.Variable(_normalized(rng.randn(*shape)), name=f"noise{i}")
                  for i, shape in enumerate(G.synthesis.noise_shapes)]
    w_rng = np.random.default_rng([seed, 1])  # the w perturbation's own stream
    optimizer = keras.optimizers.Adam(learning_rate=ProjectionSchedule(num_steps), beta_1=0.9, beta_2=0.999,
                                      epsilon=1e-8)
    trainables = [latent] + noise_vars
    optimizer.build(trainables)

    def synth(value):
        return G.synthesis(styles(value), noise_mode="const", noise=noise_vars)

    def loss(perturbation):
        images = (synth(latent + perturbation) + 1.0) * 127.5
        return (ops.mean(ops.square(images - target_big)) + ops.mean(ops.square(block_mean(images) - target_small))
                + noise_reg_weight * noise_regularizer(noise_vars))

    step = backend.minimizer(loss, trainables, optimizer, models=[G])
    normalize = backend.compiled(lambda *maps: [_standardized(m) for m in maps])
    to_sphere = backend.compiled(_sphere_projection)
    losses = np.zeros(num_steps, np.float32)
    for i in range(num_steps):
        perturbation = w_rng.standard_normal(latent.shape).astype(np.float32) * w_noise_scale(i / num_steps,
                                                                                              latent_std)
        losses[i] = float(ops.convert_to_numpy(step(ops.convert_to_tensor(perturbation))))
        for v, value in zip(noise_vars, normalize(*[v.value for v in noise_vars]), strict=True):
            v.assign(value)
        if space == "z":
            latent.assign(to_sphere(latent.value))
        if on_step is not None:
            on_step(i + 1, num_steps, float(losses[i]))
    value = ops.convert_to_numpy(latent)
    # Called once each: eagerly (a tf.function per call is traced for nothing, and TF warns of retracing when
    # project() runs in a loop).
    w = ops.convert_to_numpy(styles(latent.value))
    reconstruction = ops.convert_to_numpy(synth(latent.value))[0]
    return Projection(w=w, noises=[ops.convert_to_numpy(v) for v in noise_vars], reconstruction=reconstruction,
                      losses=losses, labels=label, z=value if space == "z" else None)


def _sphere_projection(z):
    """Latents [B, latent_size] scaled onto the sphere of radius sqrt(latent_size)."""
    return z * ops.rsqrt(ops.mean(ops.square(z), axis=1, keepdims=True))


def _on_sphere(z):
    """A NumPy latent [B, latent_size] on the sphere of radius sqrt(latent_size) (float32)."""
    z = np.asarray(z, np.float64)
    return (z / np.sqrt(np.mean(np.square(z), axis=1, keepdims=True))).astype(np.float32)


def _standardized(noise):
    """A noise map tensor with zero mean and unit std."""
    centred = noise - ops.mean(noise)
    return centred * ops.rsqrt(ops.mean(ops.square(centred)))


def _normalized(noise):
    """A NumPy noise map with zero mean and unit std (float32)."""
    centred = np.asarray(noise, np.float64) - np.mean(noise)
    return (centred / np.sqrt(np.mean(np.square(centred)))).astype(np.float32)


def load_target(path, G, normalize=None, resample=None, warn=None):
    """A target file as [X, Y, Z, 1] in [-1, 1] on G's grid via the dataset tool's reader; DataError if bad
    (or nearly all clipped by the normalisation).

    normalize None: the normalisation of G's training data (config.data_normalize; 'none' when unknown).
    resample None: onto the grid (preset voxel size, centred RAS) only when the shape differs from it;
    True: always; False: never (the shape must then be the grid's). warn(line) is told when more than
    WARN_CLIPPED of the voxels were clipped and when the brain touches a face of the grid."""
    cfg = G.config
    normalize = normalize or cfg.data_normalize or "none"
    if resample is None:
        data, _ = read_volume(path)
        resample = check_volume(path, data).shape != tuple(G.img_shape)
    grid = dict(img_shape=tuple(G.img_shape), voxel_size=cfg.voxel_size) if resample else {}
    volume, report = load_volume(path, base_size=cfg.base_size, normalize=normalize, **grid)
    if volume.shape != tuple(G.img_shape):
        raise DataError(path, f"shape {volume.shape} is not the network's grid {tuple(G.img_shape)}")
    if warn is not None and report.clipped > WARN_CLIPPED:
        warn(f"warning: {path}: --normalize {normalize} clipped {100 * report.clipped:.1f}% of its voxels to 0 or 1 "
             f"(values {report.raw_range[0]:.4g} .. {report.raw_range[1]:.4g})")
    if warn is not None and report.touching:
        warn(describe_touching(path, report.touching))
    return volume[..., np.newaxis] * 2.0 - 1.0


def reconstruction_metrics(target, reconstruction):
    """MSE, PSNR (dB, peak 1) and SSIM of two [X, Y, Z(, C)] volumes in [-1, 1], measured in [0, 1]."""
    a = np.clip((np.asarray(target, np.float64) + 1.0) / 2.0, 0.0, 1.0)
    b = np.clip((np.asarray(reconstruction, np.float64) + 1.0) / 2.0, 0.0, 1.0)
    mse = float(np.mean((a - b) ** 2))
    psnr = float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))
    a, b = a.reshape(a.shape[:3] + (-1,)), b.reshape(b.shape[:3] + (-1,))
    ssim = float(np.mean([ssim_and_cs(a[..., c], b[..., c])[0] for c in range(a.shape[-1])]))
    return {"mse": mse, "psnr": psnr, "ssim": ssim}
