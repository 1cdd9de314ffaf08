"""Time `metrics.measures.measure` on precision/recall of 1000 x 2048 features with 10 halves' ranges.

    python bench/bench_measure.py            # PYTHONPATH=OLD_CHECKOUT times an earlier checkout the same way
Prints one JSON line: the seconds, the values (which must not change between checkouts) and the code measured.
"""
import json
import time

import numpy as np

from tf3dstylegan.metrics import measures


def main():
    rng = np.random.default_rng(0)
    a, b = np.abs(rng.normal(size=(1000, 2048))), np.abs(rng.normal(size=(1000, 2048)))
    planned = measures.feature_measurements(["pr3d"], "", {"deepbet": a}, {"deepbet": b})
    start = time.perf_counter()
    results = measures.measure(planned, num_halves=10)
    print(json.dumps({"code": measures.__file__, "seconds": round(time.perf_counter() - start, 2),
                      **{k: results[k] for k in ("precision3d", "recall3d", "precision3d_lo", "recall3d_hi")}}))


if __name__ == "__main__":
    main()
