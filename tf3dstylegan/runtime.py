"""Process start-up: Keras and its backend imported without TensorFlow's C++ start-up notices.

TensorFlow's CUDA probe and CPU-feature notices (`E0000 ... failed call to cuInit`, `cpu_feature_guard`) are C++
logging that ignores TF_CPP_MIN_LOG_LEVEL, so stderr is closed at the file-descriptor level while Keras, the
backend and (for TensorFlow) its devices initialise. `TF3DSTYLEGAN_VERBOSE=1`, or `--verbose` on a command line,
shows them.

TensorFlow turns its oneDNN CPU kernels on by default only on some CPUs (Intel's); on the AMD EPYC machines we
measured, the demo's G and D forward and backward pass (batch 8) took 2.4 s with TensorFlow's default and 0.26 s
with oneDNN on, so the package turns them on before TensorFlow is imported unless TF_ENABLE_ONEDNN_OPTS is already
set.
"""
import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def verbose() -> bool:
    """Whether start-up notices and full tracebacks are wanted (TF3DSTYLEGAN_VERBOSE=1 or --verbose)."""
    return os.environ.get("TF3DSTYLEGAN_VERBOSE", "") not in ("", "0") or "--verbose" in sys.argv[1:]


def quiet_startup():
    """Import Keras and initialise its backend with stderr silenced (a no-op when verbose). An import error is
    left for the first real use to report."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            if not os.environ.get("TF_CONFIG"):  # several workers configure their collectives before any op runs
                tf.constant(0)  # initialises the devices (the CUDA driver probe logs here)
    except ImportError:
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
