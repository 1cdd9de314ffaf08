"""bench/gpu_check.py on JAX (no TensorFlow): the generator under jax.jit, JaxTrainStep on one device or
keras.distribution.DataParallel over several, device memory from memory_stats() and XLA's memory analysis."""
import contextlib
import os
from importlib import metadata

import jax
import jax.numpy as jnp
import keras
import numpy as np

from gpu_check_parts import Parts
from gpu_check_report import Skipped, dtype_policy, mentions_out_of_memory

MIB = 2 ** 20
ENVIRONMENT_VARIABLES = ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
                         "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")


def xla_memory_mb(compiled):
    """XLA's memory analysis of a compiled function in MiB: its peak (arguments, outputs and temporaries
    live at once) and the temporaries alone; {} where the platform gives none."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    peak = getattr(stats, "peak_memory_in_bytes", None)
    return {"xla_peak_memory_mb": None if peak is None else peak / MIB, "xla_temp_memory_mb":
            stats.temp_size_in_bytes / MIB, "xla_argument_memory_mb": stats.argument_size_in_bytes / MIB}


class Forward:
    """G(z) -> NumPy volumes under jax.jit over the variables' values, as tf3dstylegan.backend.compiled makes it,
    with the jitted function kept to ask XLA for its memory."""

    def __init__(self, G):
        variables = G.variables

        def pure(values, z):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return G(z)
        self.function, self.values = jax.jit(pure), [v.value for v in variables]

    def __call__(self, z):
        return np.asarray(self.function(self.values, z))

    def compiled(self, z):
        return self.function.lower(self.values, z).compile()  # cached: the call compiled it


class StepRunner:
    """runner(index): step `index` of a JaxTrainStep on fixed reals, {name: float} (float() waits for the step)."""

    def __init__(self, step, reals, seed, description):
        self.step, self.batch, self.description = step, step.batch, description
        self.state = jax.tree.map(jnp.copy, step.state(0.0))  # the step donates its state: the networks keep theirs
        self.reals = jax.device_put(reals, step.data_sharding)
        self.key = jax.random.key(seed)

    def __call__(self, index):
        self.state, stats = self.step(self.state, self.reals, index, self.key)
        return {key: float(value) for key, value in stats.items()}

    def compiled_memory(self):
        """XLA's memory analysis of the largest of the step functions compiled so far (one per lazy phase)."""
        # JaxTrainStep keeps its jitted functions in _functions; lowering again with the same shapes is cached.
        found = [xla_memory_mb(function.lower(self.state, self.reals, self.key).compile())
                 for function in self.step._functions.values()]
        return max(found, key=lambda m: m.get("xla_peak_memory_mb") or 0.0, default={})


class JaxParts(Parts):
    backend, baseline_jit = "jax", True

    def __init__(self, opts, child_env):
        self.peak_before = None
        super().__init__(opts, child_env)

    def accelerators(self):
        return [d for d in jax.devices() if d.platform != "cpu"]

    def backend_environment(self):
        import jaxlib
        devices = jax.devices()
        plugins = {dist.metadata["Name"]: dist.version for dist in metadata.distributions()
                   if (dist.metadata["Name"] or "").replace("_", "-").startswith(("jax-cuda", "jax-rocm"))}
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "plugins": plugins,
                "platform": jax.default_backend(), "devices": [str(d) for d in devices],
                "device_kinds": sorted({d.device_kind for d in devices}),
                "memory_limit_mb": (self.memory_stats().get("bytes_limit") or 0) / MIB or None,
                "default_matmul_precision": jax.config.jax_default_matmul_precision,
                "env": {k: os.environ[k] for k in ENVIRONMENT_VARIABLES if k in os.environ}}

    def strict_volumes(self, G, z):
        with jax.default_matmul_precision("highest"):  # no TF32 (or bf16 passes) in float32 dots and convolutions
            return Forward(G)(z)

    def forward(self, G, jit):
        return Forward(G)

    def forward_memory(self, forward, z):
        return xla_memory_mb(forward.compiled(z))

    def networks(self, cfg, precision, fused, weights, devices=None):
        """{cfg, G, D, G_ema, g_opt, d_opt, distribution} from `weights`, as backend/jax/trainer.py builds them."""
        from tf3dstylegan.networks import build_discriminator, build_generator
        from tf3dstylegan.training.optimizers import make_optimizer
        distribution = keras.distribution.DataParallel(devices=devices) if devices else None
        with dtype_policy(precision), distribution.scope() if distribution else contextlib.nullcontext():
            G, D = build_generator(cfg, fused_modconv=fused), build_discriminator(cfg)
            G_ema = build_generator(cfg, fused_modconv=fused)
            for model, values in ((G, weights[0]), (D, weights[1]), (G_ema, weights[0])):
                model.set_weights(values)
            g_opt, d_opt = (make_optimizer(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, interval, precision)
                            for lr, interval in ((cfg.g_lr, cfg.g_reg_interval), (cfg.d_lr, cfg.d_reg_interval)))
            g_opt.build(G.trainable_variables)
            d_opt.build(D.trainable_variables)
        return dict(cfg=cfg, G=G, D=D, G_ema=G_ema, g_opt=g_opt, d_opt=d_opt, distribution=distribution,
                    devices=devices or jax.devices()[:1])

    def runner(self, networks, batch, jit, reals):
        from tf3dstylegan.backend.jax.step import JaxTrainStep
        distribution, devices = networks["distribution"], networks["devices"]
        sharding = distribution.get_data_layout((batch,)).backend_layout if distribution else None
        step = JaxTrainStep(networks["cfg"], *(networks[k] for k in ("G", "D", "G_ema", "g_opt", "d_opt")), batch,
                            data_sharding=sharding)
        description = (f"keras.distribution.DataParallel over {len(devices)} {devices[0].platform} devices"
                       if distribution else f"one {devices[0].platform} device")
        return StepRunner(step, reals, self.opts.seed, description)

    def random_reals(self, shape):
        return jax.random.uniform(jax.random.key(self.opts.seed + 2), shape, jnp.float32, -1.0, 1.0)

    def parallel_devices(self):
        devices = jax.devices()
        if len(devices) < 2:
            raise Skipped(f"1 {devices[0].platform} device visible: DataParallel needs several (without GPUs: "
                          f"--logical_cpus 2)")
        return devices

    def memory_stats(self):
        return jax.devices()[0].memory_stats() or {}  # None on the CPU

    def reset_memory(self):
        """JAX cannot reset its peak: remember it, so that a part that raises it can say so."""
        self.peak_before = self.memory_stats().get("peak_bytes_in_use")

    def peak_memory_mb(self):
        """The device's peak since reset_memory() when it rose since then, else None (an earlier part's)."""
        peak = self.memory_stats().get("peak_bytes_in_use")
        if peak is None or self.peak_before is None or peak <= self.peak_before:
            return None
        return peak / MIB

    def is_out_of_memory(self, err):
        return mentions_out_of_memory(err)
