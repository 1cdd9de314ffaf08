"""bench/gpu_check.py on TensorFlow: tf.function (XLA with jit on), TrainStep under tf.distribute, TF's memory info."""
import contextlib
import os

from gpu_check_parts import Parts
from gpu_check_report import Skipped, dtype_policy, mentions_out_of_memory


@contextlib.contextmanager
def strict_float32():
    """No TF32 rounding in float32 matmuls and convolutions (TF's default on Ampere and later GPUs)."""
    import tensorflow as tf
    enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(enabled)


class StepRunner:
    """runner(index): step `index` of a TrainStep on fixed reals, {name: float}."""

    def __init__(self, step, reals):
        strategy, local = step.strategy, step.local_batch
        self.step, self.batch, self.description = step, step.batch, type(strategy).__name__
        self.reals = strategy.experimental_distribute_values_from_function(
            lambda ctx: reals[ctx.replica_id_in_sync_group * local:(ctx.replica_id_in_sync_group + 1) * local])

    def __call__(self, index):
        return {key: float(value) for key, value in self.step(self.reals, index).items()}

    def compiled_memory(self):
        return {}


class TensorFlowParts(Parts):
    backend, baseline_jit = "tensorflow", False

    def __init__(self, opts, child_env):
        import tensorflow as tf
        if opts.logical_cpus > 1:
            tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                                       [tf.config.LogicalDeviceConfiguration()] * opts.logical_cpus)
        self.gpus = tf.config.list_physical_devices("GPU")
        for gpu in self.gpus:
            tf.config.experimental.set_memory_growth(gpu, True)  # leaves memory to the train.py process
        self.tf = tf
        self.memory_device = "GPU:0" if self.gpus else None  # get_memory_info does not track the CPU
        super().__init__(opts, child_env)

    def accelerators(self):
        return self.gpus

    def backend_environment(self):
        tf = self.tf
        build = tf.sysconfig.get_build_info()
        return {"tensorflow": tf.__version__,
                "build": {key: build.get(key) for key in ("is_cuda_build", "cuda_version", "cudnn_version",
                                                          "cuda_compute_capabilities")},
                "devices": [d.name for d in tf.config.list_logical_devices()],
                "gpus": [dict(tf.config.experimental.get_device_details(gpu), name=gpu.name) for gpu in self.gpus],
                "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled(),
                "env": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "TF_XLA_FLAGS", "XLA_FLAGS",
                                                   "TF_GPU_ALLOCATOR") if k in os.environ}}

    def strict_volumes(self, G, z):
        with strict_float32():
            return G(self.tf.constant(z)).numpy()

    def forward(self, G, jit):
        function = self.tf.function(lambda z: G(z), jit_compile=jit)
        return lambda z: function(self.tf.constant(z)).numpy()

    def networks(self, cfg, precision, fused, weights, devices=None):
        """(strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean) from `weights`, as training builds them."""
        from tf3dstylegan.backend.tensorflow.state import build_optimizers
        from tf3dstylegan.networks import build_discriminator, build_generator
        tf = self.tf
        strategy = tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()
        with dtype_policy(precision), strategy.scope():
            G, D = build_generator(cfg, fused_modconv=fused), build_discriminator(cfg)
            G_ema = build_generator(cfg, fused_modconv=fused)
            for model, values in ((G, weights[0]), (D, weights[1]), (G_ema, weights[0])):
                model.set_weights(values)
            g_opt, d_opt, pl_mean = build_optimizers(cfg, precision, G, D)
        return strategy, cfg, G, D, G_ema, g_opt, d_opt, tf.random.Generator.from_seed(self.opts.seed), pl_mean

    def runner(self, networks, batch, jit, reals):
        from tf3dstylegan.backend.tensorflow.step import TrainStep
        strategy, cfg, G, D, G_ema, g_opt, d_opt, rng, pl_mean = networks
        return StepRunner(TrainStep(cfg, strategy, G, D, G_ema, g_opt, d_opt, rng, pl_mean, batch, jit=jit),
                          self.tf.convert_to_tensor(reals))

    def random_reals(self, shape):
        return self.tf.random.stateless_uniform(shape, [self.opts.seed, 2], -1.0, 1.0)

    def parallel_devices(self):
        tf = self.tf
        if len(self.gpus) > 1:
            return [gpu.name.replace("/physical_device:", "/") for gpu in self.gpus]
        if not self.gpus and len(tf.config.list_logical_devices("CPU")) > 1:
            return [d.name for d in tf.config.list_logical_devices("CPU")]
        raise Skipped(f"{len(self.gpus)} GPU visible: MirroredStrategy needs several (without GPUs: "
                      f"--logical_cpus 2)")

    def reset_memory(self):
        if self.memory_device:
            self.tf.config.experimental.reset_memory_stats(self.memory_device)

    def peak_memory_mb(self):
        if self.memory_device:
            return self.tf.config.experimental.get_memory_info(self.memory_device)["peak"] / 2 ** 20
        return None

    def is_out_of_memory(self, err):
        return isinstance(err, self.tf.errors.ResourceExhaustedError) or mentions_out_of_memory(err)

