"""Test-side writer of original-layout (G, D, Gs) pickles for any configuration.

Independent of tf3dstylegan.legacy: variable names and shapes follow the original's naming rule, values
are random (std 1 for weights, 0.2 for biases, strengths and buffers, as the shared fixture does).
"""
import pickle

import numpy as np

from dnnlib.tflib.network import Network
from numpy_reference import scope_name


def nf_fn(fmap_base, fmap_min, fmap_max):
    return lambda stage: int(np.clip(int(fmap_base / 2.0 ** stage), fmap_min, fmap_max))


class PickledNetwork:
    """Pickles exactly as the original's Network: class dnnlib.tflib.network.Network + state dict."""

    def __init__(self, state):
        self.state = state

    def __reduce_ex__(self, protocol):
        return Network, (), self.state


def make_states(rng, *, base, res, fmap_base=8192, fmap_min=4, fmap_max=4, latent=8, dlatent=8, mapping_fmaps=8,
                g_arch="orig", d_arch="resnet", no_noise=False, label_size=0, channels=1):
    nf = nf_fn(fmap_base, fmap_min, fmap_max)
    num_layers = 2 * res - 2

    def small(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def big(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def scalar():
        return np.float32(rng.standard_normal() * 0.2)

    def dims(r):
        return [b * 2 ** (r - 2) for b in base]

    mapping = []
    in_dim = latent * (2 if label_size else 1)
    if label_size:
        mapping.append(("LabelConcat/weight", big(label_size, latent)))
    for i in range(8):
        out = dlatent if i == 7 else mapping_fmaps
        mapping += [(f"Dense{i}/weight", big(in_dim, out) * 100), (f"Dense{i}/bias", small(out) * 10)]
        in_dim = out

    synth = [(f"noise{j}", np.zeros([1, 1] + dims((j + 5) // 2), np.float32) if no_noise
              else big(1, 1, *dims((j + 5) // 2))) for j in range(num_layers - 1)]

    def modconv(scope, k, cin, cout, noise=True, demod=True):
        out = [(f"{scope}/weight", big(k, k, k, cin, cout)), (f"{scope}/mod_weight", big(dlatent, cin)),
               (f"{scope}/mod_bias", small(cin))]
        if noise and not no_noise:
            out.append((f"{scope}/noise_strength", scalar()))
        return out + [(f"{scope}/bias", small(cout))]

    b = scope_name(base, 2, True)
    synth.append((f"{b}/Const/const", big(1, nf(1), *base)))
    synth += modconv(f"{b}/Conv", 3, nf(1), nf(1))
    if g_arch == "skip":
        synth += modconv(f"{b}/ToRGB", 1, nf(1), channels, noise=False)
    cur = nf(1)
    for r in range(3, res + 1):
        s = scope_name(base, r)
        synth += modconv(f"{s}/Conv0_up", 3, cur, nf(r - 1)) + modconv(f"{s}/Conv1", 3, nf(r - 1), nf(r - 1))
        if g_arch == "resnet":
            synth.append((f"{s}/Skip/weight", big(1, 1, 1, cur, nf(r - 1))))
        cur = nf(r - 1)
        if g_arch == "skip" or r == res:
            synth += modconv(f"{s}/ToRGB", 1, cur, channels, noise=False)

    disc = []
    cur = None
    for r in range(res, 2, -1):
        s = scope_name(base, r)
        if d_arch == "skip" or r == res:
            disc += [(f"{s}/FromImage/weight", big(1, 1, 1, channels, nf(r - 1))), (f"{s}/FromImage/bias",
                                                                                   small(nf(r - 1)))]
            cur = nf(r - 1)
        disc += [(f"{s}/Conv0/weight", big(3, 3, 3, cur, nf(r - 1))), (f"{s}/Conv0/bias", small(nf(r - 1))),
                 (f"{s}/Conv1_down/weight", big(3, 3, 3, nf(r - 1), nf(r - 2))),
                 (f"{s}/Conv1_down/bias", small(nf(r - 2)))]
        if d_arch == "resnet":
            disc.append((f"{s}/Skip/weight", big(1, 1, 1, cur, nf(r - 2))))
        cur = nf(r - 2)
    s = scope_name(base, 2)
    if d_arch == "skip":
        disc += [(f"{s}/FromImage/weight", big(1, 1, 1, channels, nf(1))), (f"{s}/FromImage/bias", small(nf(1)))]
    disc += [(f"{s}/Conv/weight", big(3, 3, 3, nf(1) + 1, nf(1))), (f"{s}/Conv/bias", small(nf(1))),
             (f"{s}/Dense0/weight", big(nf(1) * int(np.prod(base)), nf(0))), (f"{s}/Dense0/bias", small(nf(0))),
             ("Output/weight", big(nf(0), max(label_size, 1))), ("Output/bias", small(max(label_size, 1)))]

    resolution = np.int64(min(dims(res)))
    common = dict(num_channels=channels, resolution=resolution, label_size=label_size, fmap_min=fmap_min,
                  fmap_max=fmap_max, base_size=list(base), fmap_base=fmap_base)
    g_kwargs = dict(common, architecture=g_arch, latent_size=latent, dlatent_size=dlatent,
                    mapping_fmaps=mapping_fmaps, **({"no_noise": True} if no_noise else {}))
    d_kwargs = dict(common, architecture=d_arch)
    meta = dict(base=base, res=res, arch=g_arch, no_noise=no_noise)
    return dict(G=dict([("lod", np.float32(0)), ("dlatent_avg", small(dlatent))]), mapping=dict(mapping),
                synthesis=dict(synth), D=dict(disc), meta=meta, g_kwargs=g_kwargs, d_kwargs=d_kwargs)


def network_state(name, func, kwargs, variables, components=None):
    return {"version": 4, "name": name, "static_kwargs": kwargs, "components": components or {},
            "build_module_src": "raise RuntimeError('must never run')\n", "build_func_name": func,
            "variables": list(variables.items())}


def write_pickle(path, states, protocol=pickle.HIGHEST_PROTOCOL, g_build="G_main"):
    synth = PickledNetwork(network_state("G_synthesis", "G_synthesis_stylegan2_3d_curated_real",
                                         dict(states["g_kwargs"]), states["synthesis"]))
    mapping = PickledNetwork(network_state("G_mapping", "G_mapping_3d",
                                           dict(dlatent_broadcast=2 * states["meta"]["res"] - 2,
                                                **states["g_kwargs"]), states["mapping"]))
    G = PickledNetwork(network_state("G", g_build, dict(states["g_kwargs"]), states["G"],
                                     {"synthesis": synth, "mapping": mapping}))
    D = PickledNetwork(network_state("D", "D_stylegan2_3d_curated_real", dict(states["d_kwargs"]), states["D"]))
    with open(path, "wb") as f:
        pickle.dump((G, D, G), f, protocol=protocol)
