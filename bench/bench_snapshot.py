"""The training loop's per-snapshot generation (8 preview volumes in rows of 4 and the diversity probe's 32 in
chunks of 8, G_ema with const noise): eager `G(z)` calls against one compiled sampler (tf3dstylegan.sampling).

    python bench/bench_snapshot.py --preset demo --repeats 5      # KERAS_BACKEND=jax for the JAX backend
Prints one JSON line: seconds per snapshot (median of the repeats after one warm-up that also compiles), both ways,
and the largest difference between their volumes.
"""
import json
import time

import keras
import numpy as np
from absl import app, flags

flags.DEFINE_string("preset", "demo", "Training preset whose G is timed (random weights).")
flags.DEFINE_integer("repeats", 5, "Timed snapshots after one warm-up.")
FLAGS = flags.FLAGS
BATCHES = [4, 4] + [8] * 4  # the previews' two rows, then the probe's four chunks


def _median_seconds(fn, repeats):
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(_):
    from tf3dstylegan.config import load_model_config
    from tf3dstylegan.networks import build_generator
    from tf3dstylegan.sampling import sampler
    G = build_generator(load_model_config(FLAGS.preset))
    z = [np.random.default_rng(i).standard_normal((b, G.latent_size)).astype(np.float32)
         for i, b in enumerate(BATCHES)]
    sample = sampler(G)

    def eager():
        return [keras.ops.convert_to_numpy(G(batch, noise_mode="const")) for batch in z]

    def compiled():
        return [sample(batch) for batch in z]
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(eager(), compiled(), strict=True))
    print(json.dumps({"backend": keras.backend.backend(), "preset": FLAGS.preset, "img_shape": list(G.img_shape),
                      "volumes": sum(BATCHES), "eager_s": _median_seconds(eager, FLAGS.repeats),
                      "compiled_s": _median_seconds(compiled, FLAGS.repeats), "max_abs_difference": difference}))


if __name__ == "__main__":
    app.run(main)
