"""Aliasing of ADA's geometric augmentations: trilinear resampling at the native grid against the anti-aliased path
(2x lowpass up, trilinear, 2x lowpass down) that the pipe uses, on the same per-sample matrices of its pipeline.

    python bench/bench_antialias.py                       # the bgc pipe's geometry at p=1, 20x24x28 (the demo's)
    python bench/bench_antialias.py --shape 80,96,112 --batch 2 --fmax 0.3

Prints one JSON line per resampling:
  error_ideal  relative RMS error against the ideal result on a volume of random plane waves (|f| <= --fmax cycles
               per voxel on each axis): each wave evaluated exactly at the transformed positions, and dropped (the
               ideal lowpass) where the transform moves it above the grid's Nyquist frequency (0.5) on an axis;
               output voxels that read within 2 voxels of a border (mirrored) are left out.
  error_high   the part of error_ideal above 0.25 cycles per voxel on any axis (RMS, relative to the ideal's):
               aliasing and stripes put their power there; interpolation blur mostly lowers the waves below.
  seconds      median wall time of the augmentation's forward and backward pass (tf.function), --repeats calls.
"""
import json
import time

import numpy as np
from absl import app, flags

from spectra import high_power_mask

flags.DEFINE_string("pipeline", "bgc", "Augmentation pipeline whose geometric transforms are drawn.")
flags.DEFINE_list("shape", ["20", "24", "28"], "Volume shape X,Y,Z (the demo's at 8 mm by default).")
flags.DEFINE_integer("batch", 8, "Samples (one matrix each).")
flags.DEFINE_float("fmax", 0.25, "Largest plane-wave frequency on each axis, cycles per voxel.")
flags.DEFINE_integer("waves", 48, "Plane waves in the test volume.")
flags.DEFINE_integer("repeats", 3, "Timed calls per resampling after one warm-up call.")
flags.DEFINE_integer("seed", 0, "Random seed (matrices and waves).")
FLAGS = flags.FLAGS
MARGIN = 2.0  # voxels from a border that an output voxel's source must keep to be counted


def pipe_matrices(shape):
    """The pipe's geometry at p=1 for --batch samples: (matrix [B, 4, 4] centred output -> centred input)."""
    import tensorflow as tf
    from tf3dstylegan import backend
    from tf3dstylegan.training.augment import AugmentPipe
    pipe = AugmentPipe(FLAGS.pipeline, mode="fixed", p=1.0)
    matrix, _, _ = pipe._geometry(backend.StatelessRandom(tf.constant([FLAGS.seed, 11], tf.int64)), FLAGS.batch,
                                  1.0, shape)  # pylint: disable=protected-access; the pipe's own draws
    return matrix.numpy()


def plane_wave_case(shape, matrices):
    """(volume [B, X, Y, Z, 1] of the waves, ideal [B, X, Y, Z, 1] result of each matrix, counted [B, X, Y, Z])."""
    rng = np.random.default_rng(FLAGS.seed)
    freqs = rng.uniform(-FLAGS.fmax, FLAGS.fmax, (FLAGS.waves, 3))
    phases = rng.uniform(0, 2 * np.pi, FLAGS.waves)
    sizes, centre = np.array(shape, float), (np.array(shape, float) - 1) / 2
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) - centre  # centred [X, Y, Z, 3]
    volume = np.cos(2 * np.pi * (grid + centre) @ freqs.T + phases).sum(-1)
    ideal, counted = [], []
    for matrix in matrices:
        source = grid @ matrix[:3, :3].T + matrix[:3, 3] + centre                                  # [X, Y, Z, 3]
        kept = np.all(np.abs(freqs @ matrix[:3, :3]) < 0.5, axis=1)   # the wave's frequency in output voxels
        ideal.append(np.cos(2 * np.pi * source @ freqs[kept].T + phases[kept]).sum(-1))
        counted.append(np.all((source >= MARGIN) & (source <= sizes - 1 - MARGIN), axis=-1))
    batch = np.repeat(volume[None, ..., None], len(matrices), 0).astype(np.float32)
    return batch, np.stack(ideal)[..., None], np.stack(counted)


def high_rms(error):
    """RMS of the part of error [B, X, Y, Z] above 0.25 cycles per voxel on any axis (Parseval)."""
    power = np.abs(np.fft.fftn(error, axes=(1, 2, 3))) ** 2
    return float(np.sqrt(power[:, high_power_mask(error.shape[1:])].sum() / power[0].size / error.size))


def timed(resample, volumes, matrices):
    import tensorflow as tf

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = tf.reduce_sum(resample(x, matrices) ** 2)
        return tape.gradient(energy, x)
    x = tf.constant(volumes)
    seconds = []
    for repeat in range(FLAGS.repeats + 1):
        start = time.perf_counter()
        forward_backward(x).numpy()
        if repeat:
            seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def main(argv):
    del argv
    from tf3dstylegan.ops.resample3d import affine_resample, antialiased_resample
    shape = tuple(int(n) for n in FLAGS.shape)
    matrices = pipe_matrices(shape)
    volume, ideal, counted = plane_wave_case(shape, matrices)
    for name, resample in (("trilinear", affine_resample), ("antialiased", antialiased_resample)):
        out = np.asarray(resample(volume, matrices))
        error = np.where(counted[..., None], out - ideal, 0.0)[..., 0]
        record = {"what": "antialias", "resample": name, "pipeline": FLAGS.pipeline, "shape": list(shape),
                  "batch": FLAGS.batch, "fmax": FLAGS.fmax, "seed": FLAGS.seed,
                  "error_ideal": round(float(np.sqrt((error ** 2).sum() / (ideal[..., 0][counted] ** 2).sum())), 4),
                  "error_high": round(high_rms(error) / float(np.sqrt(np.mean(ideal[..., 0][counted] ** 2))), 4),
                  "seconds": round(timed(resample, volume, matrices), 4)}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
