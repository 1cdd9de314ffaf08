"""Time the ORIGINAL 3D-StyleGAN (sh4174/3DStyleGAN, TF1 graph code, NCDHW) on the CPU, like bench_networks.py.

Get the original's code outside this repository (it is not part of this package), e.g.
    git clone https://github.com/sh4174/3DStyleGAN /tmp/orig3d      # measured at commit dce413e
    python bench/bench_original.py --original /tmp/orig3d --what infer
    python bench/bench_original.py --original /tmp/orig3d --what train
The defaults are our preset 2mm-fd16 (80x96x112, 16 feature maps, latent 64, G orig, D resnet), float32 (the
original's float16 default does not build under Keras 3, whose layers in its upfirdn_3d cast to float32).
`infer` times one generator pass of a batch (G_main, is_validation=True, stored noise, no truncation, fetched to
NumPy; the output's shape and finiteness are reported); `train` times one G non-saturating logistic step then one
D logistic step (the original's loss functions, forward and backward), plain Adam(0.002, 0, 0.99, 1e-8), no
regularisers. Both after one warm-up call. Prints one JSON line.

The checkout runs unmodified, in-process, under tensorflow.compat.v1, with these run-time shims (import_original):
  * while the original's modules are imported, `import tensorflow` yields tf.compat.v1 (the API it was written for);
  * tf.compat.v1.nn.conv3d / conv3d_transpose with data_format='NCDHW' transpose to NDHWC and back, because TF has
    no CPU kernel for NCDHW 3-D convolutions;
  * fused_bias_act defaults to impl='ref' (the CUDA plugin needs nvcc); upfirdn_3d only has its 'ref' path anyway;
  * an empty `tensorboard` module stands in when tensorboard is not installed (autosummary imports it, the
    benchmark never writes summaries).
The original's build-time prints go to stderr, so stdout holds only the JSON line. Peak memory is VmHWM.
`--check_fixture ../shared/fixtures/tf1-2mm-fd16` first loads that fixture's weights (a pickle the original wrote,
read with our restricted loader) and reports how far the built G and D are from the outputs the original computed
for it: evidence that the timed graph is the complete original network (its passes then count in the peak, so
measure memory without it). The configuration that reproduces the planning baseline, TF's Eigen kernels instead
of oneDNN: TF_ENABLE_ONEDNN_OPTS=0 in the environment.
"""
import contextlib
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import tensorflow as tf

from proc_memory import proc_status_gb

RSS_AFTER_IMPORT_GB = proc_status_gb("VmRSS")
from absl import app, flags  # noqa: E402

flags.DEFINE_string("original", None, "Path of a checkout of github.com/sh4174/3DStyleGAN.", required=True)
flags.DEFINE_enum("what", "infer", ["infer", "train"], "Generator inference or one G+D training iteration.")
flags.DEFINE_integer("batch", 2, "Batch size.")
flags.DEFINE_integer("repeats", 2, "Timed repetitions after one warm-up.")
flags.DEFINE_integer("fmaps", 16, "fmap_min = fmap_max.")
flags.DEFINE_integer("latent", 64, "latent_size = dlatent_size = mapping_fmaps.")
flags.DEFINE_list("base_size", ["5", "6", "7"], "Size of the constant input block.")
flags.DEFINE_integer("resolution_log2", 6, "Image axes are base_size * 2**(resolution_log2 - 2).")
flags.DEFINE_enum("g_architecture", "orig", ["orig", "skip", "resnet"], "Generator architecture.")
flags.DEFINE_enum("d_architecture", "resnet", ["orig", "skip", "resnet"], "Discriminator architecture.")
flags.DEFINE_integer("seed", 100, "NumPy (and derived TF) random seed, as in the original's training configs.")
flags.DEFINE_string("check_fixture", None, "Fixture folder (network.pkl + reference.npz of this configuration): load "
                    "its weights and report the differences to its reference outputs before timing.")
FLAGS = flags.FLAGS
v1 = tf.compat.v1


def _ncdhw_to_ndhwc(values):
    return [values[0], *values[2:], values[1]]


def install_conv_shims():
    """Run NCDHW conv3d / conv3d_transpose of tf.compat.v1.nn as NDHWC between two transposes."""
    conv3d, conv3d_transpose = v1.nn.conv3d, v1.nn.conv3d_transpose
    to_last, to_first = [0, 2, 3, 4, 1], [0, 4, 1, 2, 3]

    def conv3d_shim(input, filter=None, strides=None, padding=None, data_format="NDHWC", **kwargs):  # noqa: A002
        if data_format != "NCDHW":
            return conv3d(input, filter, strides, padding, data_format=data_format, **kwargs)
        y = conv3d(tf.transpose(input, to_last), filter, _ncdhw_to_ndhwc(strides), padding, data_format="NDHWC",
                   **kwargs)
        return tf.transpose(y, to_first)

    def conv3d_transpose_shim(value, filter=None, output_shape=None, strides=None, padding="SAME",  # noqa: A002
                              data_format="NDHWC", **kwargs):
        if data_format != "NCDHW":
            return conv3d_transpose(value, filter, output_shape, strides, padding, data_format, **kwargs)
        y = conv3d_transpose(tf.transpose(value, to_last), filter, _ncdhw_to_ndhwc(output_shape),
                             _ncdhw_to_ndhwc(strides), padding, "NDHWC", **kwargs)
        return tf.transpose(y, to_first)

    v1.nn.conv3d, v1.nn.conv3d_transpose = conv3d_shim, conv3d_transpose_shim


def import_original(path):
    """Import the original's network and loss modules from `path` with the shims of the module docstring."""
    path = os.path.abspath(path)
    sys.path.insert(0, path)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        for name in ["tensorboard", "tensorboard.summary", "tensorboard.plugins",
                     "tensorboard.plugins.custom_scalar", "tensorboard.plugins.custom_scalar.layout_pb2"]:
            sys.modules[name] = types.ModuleType(name)
    v1.disable_v2_behavior()
    real_tf = sys.modules["tensorflow"]
    sys.modules["tensorflow"] = v1
    try:
        import dnnlib.tflib as tflib
        import dnnlib.tflib.ops.fused_bias_act as fba
        import training.loss as loss
        import training.networks3d_stylegan2  # noqa: F401  (imported by name through tflib.Network)
    finally:
        sys.modules["tensorflow"] = real_tf
    if not tflib.__file__.startswith(path):
        raise ImportError(f"dnnlib was imported from {tflib.__file__}, not from {path}")
    defaults = fba.fused_bias_act.__defaults__
    assert defaults[-1] == "cuda", defaults
    fba.fused_bias_act.__defaults__ = (*defaults[:-1], "ref")
    install_conv_shims()
    return tflib, loss


def build_networks(tflib):
    """The original's G (G_main: mapping + synthesis) and D, configured like our preset, float32."""
    base_size = [int(b) for b in FLAGS.base_size]
    resolution = min(base_size) * 2 ** (FLAGS.resolution_log2 - 2)  # what its training loop passes
    common = dict(num_channels=1, resolution=resolution, label_size=0, fmap_base=8192, fmap_min=FLAGS.fmaps,
                  fmap_max=FLAGS.fmaps, base_size=base_size, dtype="float32")
    G = tflib.Network("G", func_name="training.networks3d_stylegan2.G_main", architecture=FLAGS.g_architecture,
                      latent_size=FLAGS.latent, dlatent_size=FLAGS.latent, mapping_fmaps=FLAGS.latent, **common)
    D = tflib.Network("D", func_name="training.networks3d_stylegan2.D_stylegan2_3d_curated_real",
                      architecture=FLAGS.d_architecture, **common)
    return G, D


def fixture_variables(folder):
    """{network name: {local variable name: value}} of a fixture's (G, D, Gs) pickle, read with our restricted
    loader. Call before import_original: our stand-in `dnnlib` is dropped from sys.modules afterwards."""
    from tf3dstylegan.legacy import read_legacy_pickle

    def flatten(net, prefix=""):
        values = {prefix + name: value for name, value in net.variables.items()}
        for component in net.components.values():
            values.update(flatten(component, prefix + component.name + "/"))
        return values

    G, D, _ = read_legacy_pickle(Path(folder) / "network.pkl")
    for name in [m for m in sys.modules if m == "dnnlib" or m.startswith("dnnlib.")]:
        del sys.modules[name]
    return {net.name: flatten(net) for net in (G, D)}


def check_against_fixture(tflib, G, D, folder, variables):
    """Load the fixture's weights into G and D; the max |difference| to the outputs the original computed for it."""
    for net in (G, D):
        if set(net.vars) != set(variables[net.name]):
            raise ValueError(f"{folder}: {net.name}'s variables differ from the built network's: is it the same "
                             "configuration?")
        tflib.set_vars({net.vars[name]: value for name, value in variables[net.name].items()})
    reference = np.load(Path(folder) / "reference.npz")
    images = G.get_output_for(tf.constant(reference["z"]), None, is_validation=True, randomize_noise=False,
                              truncation_psi_val=1)
    scores = D.get_output_for(tf.constant(reference["images"]), tf.zeros([len(reference["z"]), 0]))
    images, scores = tflib.run([images, scores])
    return {"fixture_max_abs_diff_images": float(np.abs(images - reference["images"]).max()),
            "fixture_max_abs_images": float(np.abs(reference["images"]).max()),
            "fixture_max_abs_diff_scores": float(np.abs(scores - reference["scores"]).max())}


def build_step(tflib, loss, G, D):
    """The fetches of the session calls that make one timed call, and their feed dict."""
    batch = FLAGS.batch
    if FLAGS.what == "infer":
        latents = v1.placeholder(tf.float32, [batch, FLAGS.latent])
        images = G.get_output_for(latents, None, is_validation=True, randomize_noise=False, truncation_psi_val=1)
        feed = {latents: np.random.RandomState(0).randn(batch, FLAGS.latent).astype(np.float32)}
        return [images], feed
    shape = [batch] + D.input_shapes[0][1:]
    reals = v1.placeholder(tf.float32, shape)
    training_set = types.SimpleNamespace(get_random_labels_tf=lambda n: tf.zeros([n, 0]))
    with tf.name_scope("G_loss"):
        g_loss, _ = loss.G_logistic_ns(G, D, None, training_set, batch)
    with tf.name_scope("D_loss"):
        d_loss, _ = loss.D_logistic(G, D, None, training_set, batch, reals, training_set.get_random_labels_tf(batch))
    steps = []
    for name, value, net in [("G", g_loss, G), ("D", d_loss, D)]:
        opt = v1.train.AdamOptimizer(0.002, beta1=0.0, beta2=0.99, epsilon=1e-8, name=f"Adam_{name}")
        steps.append(opt.minimize(tf.reduce_mean(value), var_list=list(net.trainables.values())))
    tflib.init_uninitialized_vars()
    feed = {reals: np.random.RandomState(0).uniform(-1, 1, shape).astype(np.float32)}
    return steps, feed


def main(argv):
    del argv
    variables = fixture_variables(FLAGS.check_fixture) if FLAGS.check_fixture else None
    with contextlib.redirect_stdout(sys.stderr):
        tflib, loss = import_original(FLAGS.original)
        tflib.init_tf({"rnd.np_random_seed": FLAGS.seed})
        G, D = build_networks(tflib)
        check = check_against_fixture(tflib, G, D, FLAGS.check_fixture, variables) if variables else {}
        fetches, feed = build_step(tflib, loss, G, D)
    session = v1.get_default_session()

    def call():
        # A training iteration runs the G step, then the D step, as two session calls like the original's loop.
        return [session.run(fetch, feed) for fetch in fetches]

    start = time.perf_counter()
    outputs = call()
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FLAGS.repeats):
        call()
    seconds = (time.perf_counter() - start) / FLAGS.repeats
    peak = proc_status_gb("VmHWM")  # this process's own peak (ru_maxrss would include a parent's)
    result = {"code": "original", "what": FLAGS.what, "batch": FLAGS.batch, "fmaps": FLAGS.fmaps,
              "latent": FLAGS.latent, "resolution_log2": FLAGS.resolution_log2,
              "seconds_per_batch": seconds, "volumes_per_s": FLAGS.batch / seconds,
              "first_call_s": first_call, "rss_after_import_gb": RSS_AFTER_IMPORT_GB,
              "peak_rss_gb": peak, "peak_above_import_gb": peak - RSS_AFTER_IMPORT_GB, **check}
    if FLAGS.what == "infer":
        images = outputs[0]
        result.update(output_shape=list(images.shape), output_finite=bool(np.isfinite(images).all()),
                      output_std=float(images.std()))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
