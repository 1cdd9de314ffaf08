"""Load the original TF1 3D-StyleGAN pickles into our Keras models, without TF1.

The pickle is read with a restricted unpickler that knows only `dnnlib.tflib.network.Network`,
`dnnlib.util.EasyDict` and numpy's array reconstruction helpers; nothing from the file is executed.
The configuration comes from each network's `static_kwargs` (with the original build functions'
defaults), and weights are copied by a table from TF1 variable names, each checked by shape: every
TF1 variable must be used exactly once and every Keras weight filled.
"""
import io
import math
import pickle
import reprlib
from pathlib import Path

import numpy as np

from tf3dstylegan.config import Config
from tf3dstylegan.networks.loaded import LoadedNetworks
from tf3dstylegan.networks.synthesis import style_layer_level

G_BUILD = "G_main"
MAPPING_BUILD = "G_mapping_3d"
SYNTHESIS_BUILD = "G_synthesis_stylegan2_3d_curated_real"
D_BUILD = "D_stylegan2_3d_curated_real"
RESAMPLE_KERNEL = [1, 3, 3, 3, 1]

# Defaults of the original build functions for kwargs a pickle may omit.
SYNTHESIS_DEFAULTS = dict(dlatent_size=96, num_channels=1, resolution=128, fmap_base=4096, fmap_decay=1.0,
                          fmap_min=30, fmap_max=30, architecture="skip", nonlinearity="lrelu",
                          resample_kernel=RESAMPLE_KERNEL, fused_modconv=False, base_size=[4, 4, 4], no_noise=False,
                          dtype="float16")
MAPPING_DEFAULTS = dict(latent_size=96, label_size=0, dlatent_size=96, mapping_layers=8, mapping_fmaps=96,
                        mapping_lrmul=0.01, mapping_nonlinearity="lrelu")
D_DEFAULTS = dict(num_channels=1, resolution=128, label_size=0, fmap_base=4096, fmap_decay=1.0, fmap_min=30,
                  fmap_max=30, architecture="orig", nonlinearity="lrelu", mbstd_group_size=4, mbstd_num_features=1,
                  resample_kernel=RESAMPLE_KERNEL, base_size=[4, 4, 4], dtype="float16")

_COMMON_FIELDS = dict(num_channels=int, label_size=int, fmap_base=int, fmap_decay=float, fmap_min=int, fmap_max=int,
                      architecture=str)  # static_kwargs read into the config, with their types
_G_FIELDS = dict(_COMMON_FIELDS, latent_size=int, dlatent_size=int, mapping_fmaps=int, mapping_layers=int,
                 mapping_lrmul=float)
_D_FIELDS = dict(_COMMON_FIELDS, mbstd_group_size=int, mbstd_num_features=int)

_ALLOWED_GLOBALS = {
    ("dnnlib.tflib.network", "Network"), ("dnnlib.util", "EasyDict"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class LegacyFormatError(ValueError):
    """A file that is not a loadable original 3D-StyleGAN pickle."""


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the classes a legacy snapshot needs; anything else is refused before it runs."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a class a 3D-StyleGAN pickle needs")
        if module.startswith("dnnlib"):
            import dnnlib.tflib.network
            import dnnlib.util
            return {"Network": dnnlib.tflib.network.Network, "EasyDict": dnnlib.util.EasyDict}[name]
        if hasattr(np, "_core"):  # numpy >= 2 names the private package numpy._core
            module = module.replace("numpy.core", "numpy._core")
        else:
            module = module.replace("numpy._core", "numpy.core")
        return super().find_class(module, name)


def read_legacy_pickle(path):
    """(G, D, Gs) Network states from a legacy snapshot, or LegacyFormatError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, MemoryError, OSError, RecursionError) as err:
        raise LegacyFormatError(f"{path}: not a readable 3D-StyleGAN pickle ({err or type(err).__name__})") from None
    from dnnlib.tflib.network import Network
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, Network) for n in obj)):
        raise LegacyFormatError(f"{path}: expected a (G, D, Gs) tuple of Network states, got {type(obj).__name__}")
    return obj


def _check_build(net, expected, path):
    from dnnlib.tflib.network import Network
    if not isinstance(net, Network):
        raise LegacyFormatError(f"{path}: a network component is a {type(net).__name__}, not a Network state")
    if net.build_func_name != expected:
        raise LegacyFormatError(f"{path}: unknown build function {net.build_func_name!r} for network {net.name!r} "
                                f"(supported: {expected!r})")


def _field(kwargs, key, kind, what, path):
    """kwargs[key] as `kind` (int, float or str); LegacyFormatError naming the file and the field."""
    value = kwargs[key]
    try:
        if kind is str and not isinstance(value, str):
            raise TypeError
        if kind in (int, float) and (isinstance(value, (bool, str)) or not math.isfinite(float(value))):
            raise ValueError
        converted = kind(value)
        if kind is int and converted != float(value):
            raise ValueError
        return converted
    except (TypeError, ValueError, OverflowError):
        raise LegacyFormatError(f"{path}: {what} static_kwargs {key}={reprlib.repr(value)} is not "
                                f"{'an integer' if kind is int else 'a number' if kind is float else kind.__name__}") \
            from None


def _base_size(kwargs, what, path):
    value = kwargs["base_size"]
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 3:
        raise LegacyFormatError(f"{path}: {what} static_kwargs base_size={reprlib.repr(value)} is not 3 sizes")
    base = [_field({"base_size": b}, "base_size", int, what, path) for b in value]
    if min(base) < 1:
        raise LegacyFormatError(f"{path}: {what} static_kwargs base_size={base} must be 3 positive integers")
    return base


def _resolution_log2(resolution, base_size, what, path):
    # Spec §1: resolution_pow2 = int(resolution / min(base_size) * 4), R = int(log2(resolution_pow2)).
    pow2 = int(resolution / min(base_size) * 4)
    res_log2 = int(math.log2(pow2)) if pow2 > 0 else 0
    if pow2 != 2 ** res_log2 or res_log2 < 2:
        raise LegacyFormatError(f"{path}: {what} resolution {resolution} does not fit base_size {base_size}")
    return res_log2


def _supported(kwargs, key, expected, what, path):
    value = kwargs[key]
    if (list(value) if isinstance(value, (list, tuple, np.ndarray)) else value) != expected:
        raise LegacyFormatError(f"{path}: {what} {key}={reprlib.repr(value)} is not supported (expected {expected!r})")


def config_from_states(G, D, path="<pickle>"):
    """The Config (G fields from G's kwargs, D fields from D's) of a legacy snapshot."""
    _check_build(G, G_BUILD, path)
    _check_build(D, D_BUILD, path)
    for key, expected in (("synthesis", SYNTHESIS_BUILD), ("mapping", MAPPING_BUILD)):
        if key not in G.components:
            raise LegacyFormatError(f"{path}: G has no {key} component")
        _check_build(G.components[key], expected, path)
    gk = {**SYNTHESIS_DEFAULTS, **MAPPING_DEFAULTS, **G.static_kwargs}
    dk = {**D_DEFAULTS, **D.static_kwargs}
    for kwargs, what in ((gk, "G"), (dk, "D")):
        _supported(kwargs, "resample_kernel", RESAMPLE_KERNEL, what, path)
        _supported(kwargs, "nonlinearity", "lrelu", what, path)
    _supported(gk, "mapping_nonlinearity", "lrelu", "G", path)
    base = _base_size(gk, "G", path)
    res_log2 = _resolution_log2(_field(gk, "resolution", float, "G", path), base, "G", path)
    if _base_size(dk, "D", path) != base or \
            _resolution_log2(_field(dk, "resolution", float, "D", path), base, "D", path) != res_log2:
        raise LegacyFormatError(f"{path}: G and D disagree on base_size/resolution")
    g = {key: _field(gk, key, kind, "G", path) for key, kind in _G_FIELDS.items()}
    d = {key: _field(dk, key, kind, "D", path) for key, kind in _D_FIELDS.items()}
    for key in ("fmap_base", "fmap_decay", "fmap_min", "fmap_max", "num_channels", "label_size"):
        if float(g[key]) != float(d[key]):
            raise LegacyFormatError(f"{path}: G and D disagree on {key} ({g[key]} vs {d[key]})")
    try:
        cfg = Config(name=Path(path).stem, base_size=tuple(base), resolution_log2=res_log2,
                     g_architecture=g.pop("architecture"), d_architecture=d["architecture"],
                     no_noise=bool(gk["no_noise"]), mbstd_group_size=d["mbstd_group_size"],
                     mbstd_num_features=d["mbstd_num_features"], **g)
    except ValueError as err:
        raise LegacyFormatError(f"{path}: {err}") from None
    return cfg, str(gk["dtype"]), bool(gk["fused_modconv"])


def _scope(base, r, capital_x=False):
    dims = [b * 2 ** (r - 2) for b in base]
    return f"{dims[0]}x{dims[1]}{'X' if capital_x else 'x'}{dims[2]}"


def _noise_layout(value):      # [1, 1, x, y, z] -> [1, x, y, z, 1]
    return np.transpose(value, (0, 2, 3, 4, 1))


def _const_layout(value):      # [1, C, b0, b1, b2] -> [1, b0, b1, b2, C]
    return np.transpose(value, (0, 2, 3, 4, 1))


def _dense_from_nchw_rows(channels):
    def convert(value):        # rows flattened as [C, X*Y*Z] (channels-first) -> [X*Y*Z, C] (channels-last)
        rows, out = value.shape
        return value.reshape(channels, rows // channels, out).transpose(1, 0, 2).reshape(rows, out)
    return convert


def _identity(value):
    return value


def generator_table(G):
    """[(component, tf1_name, keras_variable, convert)] for every weight of our Generator."""
    cfg, synth, table = G.config, G.synthesis, []
    table.append(("G", "dlatent_avg", G.w_avg, _identity))
    for i, layer in enumerate(G.mapping.dense_layers):
        table += [("mapping", f"Dense{i}/weight", layer.weight, _identity),
                  ("mapping", f"Dense{i}/bias", layer.bias, _identity)]
    if cfg.label_size:
        table.append(("mapping", "LabelConcat/weight", G.mapping.label_embed, _identity))
    base = cfg.base_size
    table.append(("synthesis", f"{_scope(base, 2, True)}/Const/const", synth.const.const, _const_layout))
    for j, layer in enumerate(synth.style_layers):
        r = style_layer_level(j)
        scope = f"{_scope(base, 2, True)}/Conv" if j == 0 else \
            f"{_scope(base, r)}/{'Conv0_up' if j % 2 else 'Conv1'}"
        table += [("synthesis", f"{scope}/weight", layer.conv.weight, _identity),
                  ("synthesis", f"{scope}/mod_weight", layer.conv.mod_weight, _identity),
                  ("synthesis", f"{scope}/mod_bias", layer.conv.mod_bias, _identity),
                  ("synthesis", f"{scope}/bias", layer.bias, _identity),
                  ("synthesis", f"noise{j}", layer.noise.noise_buffer, _noise_layout)]
        if layer.noise.strength is not None:
            table.append(("synthesis", f"{scope}/noise_strength", layer.noise.strength, _identity))
    for r, skip in synth.skips.items():
        r = int(r)
        table.append(("synthesis", f"{_scope(base, r)}/Skip/weight", skip.weight, _identity))
    for r, to_image in synth.to_images.items():
        r = int(r)
        scope = f"{_scope(base, r, capital_x=(r == 2))}/ToRGB"
        table += [("synthesis", f"{scope}/weight", to_image.conv.weight, _identity),
                  ("synthesis", f"{scope}/mod_weight", to_image.conv.mod_weight, _identity),
                  ("synthesis", f"{scope}/mod_bias", to_image.conv.mod_bias, _identity),
                  ("synthesis", f"{scope}/bias", to_image.bias, _identity)]
    return table


def discriminator_table(D):
    """[(component, tf1_name, keras_variable, convert)] for every weight of our Discriminator."""
    base, table = D.config.base_size, []

    def conv(scope, layer):
        table.append(("D", f"{scope}/weight", layer.weight, _identity))
        if layer.bias is not None:
            table.append(("D", f"{scope}/bias", layer.bias, _identity))

    for key, layer in D.from_images.items():
        conv(f"{_scope(base, int(key))}/FromImage", layer)
    for key in D.conv0s:
        scope = _scope(base, int(key))
        conv(f"{scope}/Conv0", D.conv0s[key])
        conv(f"{scope}/Conv1_down", D.conv1s[key])
        if key in D.skips:
            conv(f"{scope}/Skip", D.skips[key])
    conv(f"{_scope(base, 2)}/Conv", D.base_conv)
    channels = int(D.base_conv.weight.shape[-1])
    table += [("D", f"{_scope(base, 2)}/Dense0/weight", D.dense0.weight, _dense_from_nchw_rows(channels)),
              ("D", f"{_scope(base, 2)}/Dense0/bias", D.dense0.bias, _identity)]
    conv("Output", D.output_layer)
    return table


def assign_from_table(table, sources, ignored):
    """Copy every TF1 variable into its Keras weight; returns the list of mismatches (empty when all fit)."""
    used = {key: set() for key in sources}
    problems = []
    for component, name, variable, convert in table:
        values = sources[component].variables
        if name not in values:
            problems.append(f"missing {component}:{name}")
            continue
        used[component].add(name)
        try:
            value = convert(np.asarray(values[name], dtype=np.float32))
        except (TypeError, ValueError):
            problems.append(f"{component}:{name} holds {reprlib.repr(values[name])}, not numbers")
            continue
        if tuple(value.shape) != tuple(variable.shape):
            problems.append(f"shape of {component}:{name} is {tuple(np.shape(values[name]))}, "
                            f"expected {tuple(variable.shape)} after layout conversion")
            continue
        variable.assign(value)
    for component, net in sources.items():
        extra = sorted(set(net.variables) - used[component] - ignored.get(component, set()))
        problems += [f"unused {component}:{name} {tuple(np.shape(net.variables[name]))}" for name in extra]
    return problems


def convert_legacy(path, fused_modconv=None):
    """LoadedNetworks from a legacy (G, D, Gs) snapshot."""
    from tf3dstylegan.networks import Discriminator, Generator
    G_state, D_state, Gs_state = read_legacy_pickle(path)
    cfg, source_dtype, pickled_fused = config_from_states(G_state, D_state, path)
    stored = sum(np.asarray(v).nbytes for v in Gs_state.variables.values()) + sum(
        np.asarray(v).nbytes for net in Gs_state.components.values() for v in net.variables.values())
    if cfg.min_generator_bytes() > stored * 1.01 + 4096:
        raise LegacyFormatError(f"{path}: claims a {cfg.img_shape} generator with fmap_max {cfg.fmap_max} that "
                                f"needs at least {cfg.min_generator_bytes():,} bytes of weights, but holds {stored:,}")
    fused = pickled_fused if fused_modconv is None else fused_modconv
    nets, problems = {}, []
    for key, state in (("G", G_state), ("G_ema", Gs_state)):
        G = Generator(cfg, fused_modconv=fused, name="generator")
        sources = {"G": state, "mapping": state.components["mapping"], "synthesis": state.components["synthesis"]}
        problems += [f"{key} {p}" for p in assign_from_table(generator_table(G), sources, {"G": {"lod"}})]
        nets[key] = G
    D = Discriminator(cfg, name="discriminator")
    problems += assign_from_table(discriminator_table(D), {"D": D_state}, {})
    if problems:
        raise LegacyFormatError(f"{path}: variables do not match the network: " + "; ".join(problems))
    return LoadedNetworks(G=nets["G"], D=D, G_ema=nets["G_ema"], config=cfg, source=str(path),
                          source_dtype=source_dtype)
