"""An independent NumPy implementation of the original 3D-StyleGAN's forward pass (docs/original-code.md).

Channels-first `[N, C, D0, D1, D2]` like the original, dense 5x5x5 FIR, zero-insertion up-sampling,
and parameters taken straight from TF1-named variable dicts. Slow; small sizes only.
"""
import math

import numpy as np

K1 = np.array([1, 3, 3, 3, 1], np.float64)
K3 = np.einsum("i,j,k->ijk", K1, K1, K1) / K1.sum() ** 3
SQRT2 = math.sqrt(2)


def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * SQRT2


def pad(x, a, b):
    return np.pad(x, [(0, 0), (0, 0)] + [(a, b)] * 3)


def xcorr(x, w, stride=1):
    """VALID cross-correlation. x: [N, I, D, H, W], w: [k, k, k, I, O] -> [N, O, ...]."""
    k = w.shape[0]
    out = [(s - k) // stride + 1 for s in x.shape[2:]]
    y = np.zeros((x.shape[0], w.shape[-1], *out))
    for a in range(k):
        for b in range(k):
            for c in range(k):
                patch = x[:, :, a:a + stride * out[0]:stride, b:b + stride * out[1]:stride,
                          c:c + stride * out[2]:stride]
                y += np.einsum("nidhw,io->nodhw", patch, w[a, b, c])
    return y


def fir(x, gain=1.0):
    """Per-channel VALID correlation with the dense 5x5x5 kernel * gain."""
    n, c = x.shape[:2]
    y = xcorr(x.reshape(n * c, 1, *x.shape[2:]), (K3 * gain)[..., None, None])
    return y.reshape(n, c, *y.shape[2:])


def zero_insert(x):
    out = np.zeros(x.shape[:2] + tuple(2 * s - 1 for s in x.shape[2:]))
    out[:, :, ::2, ::2, ::2] = x
    return out


def upsample_conv(x, w):
    k = w.shape[0]
    y = xcorr(pad(zero_insert(x), k - 1, k - 1), w[:, :, ::-1])
    p0, p1 = {3: (2, 1), 1: (3, 2)}[k]
    return fir(pad(y, p0, p1), gain=4.0)


def conv_downsample(x, w):
    k = w.shape[0]
    p0, p1 = {3: (3, 2), 1: (2, 1)}[k]
    return xcorr(fir(pad(x, p0, p1)), w, stride=2)


def upsample(x):
    x = x.repeat(2, axis=2).repeat(2, axis=3).repeat(2, axis=4)
    return fir(pad(x, 3, 1), gain=4.0)


def downsample(x):
    return fir(pad(x, 3, 1))[:, :, ::2, ::2, ::2]


def conv_same(x, w):
    k = w.shape[0]
    return xcorr(pad(x, k // 2, k // 2), w)


def he(w):
    return w / math.sqrt(np.prod(w.shape[:-1]))


def bias(x, b, lrmul=1.0):
    return x + (b * lrmul).reshape((1, -1) + (1,) * (x.ndim - 2))


def mbstd(x, group=4):
    n = x.shape[0]
    g = min(group, n)
    y = x.reshape(g, n // g, *x.shape[1:])
    std = np.sqrt(((y - y.mean(0)) ** 2).mean(0) + 1e-8)      # [M, C, D, H, W]
    s = std.mean(axis=(1, 2, 3, 4))                              # [M]
    s = np.tile(s, g)                                            # sample i -> group i mod M
    return np.concatenate([x, np.broadcast_to(s[:, None, None, None, None], (n, 1, *x.shape[2:]))], axis=1)


def mapping(v, z, labels=None, layers=8, lrmul=0.01):
    if labels is not None:
        z = np.concatenate([z, labels @ v["LabelConcat/weight"]], axis=1)
    x = z / np.sqrt((z ** 2).mean(axis=1, keepdims=True) + 1e-8)
    for i in range(layers):
        w = v[f"Dense{i}/weight"]
        x = lrelu(x @ (w * lrmul / math.sqrt(w.shape[0])) + v[f"Dense{i}/bias"] * lrmul)
    return x


def modconv(x, v, scope, wvec, up=False, demod=True):
    w = he(v[f"{scope}/weight"])
    mw = v[f"{scope}/mod_weight"]
    s = wvec @ (mw / math.sqrt(mw.shape[0])) + v[f"{scope}/mod_bias"] + 1          # [N, I]
    x = x * s[:, :, None, None, None]
    x = upsample_conv(x, w) if up else conv_same(x, w)
    if demod:
        d = 1 / np.sqrt(np.einsum("abcio,ni->no", w ** 2, s ** 2) + 1e-8)
        x = x * d[:, :, None, None, None]
    return x


def scope_name(base, r, capital=False):
    d = [b * 2 ** (r - 2) for b in base]
    return f"{d[0]}x{d[1]}{'X' if capital else 'x'}{d[2]}"


def synthesis(v, ws, base, res, arch="orig", no_noise=False):
    def layer(x, scope, idx, up=False):
        x = modconv(x, v, scope, ws[:, idx], up=up)
        if not no_noise:
            x = x + v[f"noise{idx}"] * v[f"{scope}/noise_strength"]
        return lrelu(bias(x, v[f"{scope}/bias"]))

    def to_rgb(x, scope, idx):
        return bias(modconv(x, v, f"{scope}/ToRGB", ws[:, idx], demod=False), v[f"{scope}/ToRGB/bias"])

    b = scope_name(base, 2, True)
    x = np.tile(v[f"{b}/Const/const"], (ws.shape[0], 1, 1, 1, 1))
    x = layer(x, f"{b}/Conv", 0)
    img = to_rgb(x, b, 1) if arch == "skip" else None
    for r in range(3, res + 1):
        s = scope_name(base, r)
        t = x
        x = layer(x, f"{s}/Conv0_up", 2 * r - 5, up=True)
        x = layer(x, f"{s}/Conv1", 2 * r - 4)
        if arch == "resnet":
            x = (x + upsample_conv(t, he(v[f"{s}/Skip/weight"]))) / SQRT2
        if arch == "skip":
            img = upsample(img) + to_rgb(x, s, 2 * r - 3)
        elif r == res:
            img = to_rgb(x, s, 2 * r - 3)
    return img


def generator(states, z, psi=1.0, labels=None):
    """states: dict of TF1 variable dicts {'G', 'mapping', 'synthesis'} + geometry in states['meta']."""
    meta = states["meta"]
    w = mapping(states["mapping"], z, labels)
    ws = np.repeat(w[:, None], 2 * meta["res"] - 2, axis=1)
    if psi != 1:
        avg = states["G"]["dlatent_avg"]
        ws = avg + (ws - avg) * psi
    return synthesis(states["synthesis"], ws, meta["base"], meta["res"], meta["arch"], meta.get("no_noise", False))


def discriminator(v, x, base, res, arch="resnet", group=4, labels=None):
    img = x
    h = None
    for r in range(res, 2, -1):
        s = scope_name(base, r)
        if arch == "skip" or r == res:
            t = lrelu(bias(conv_same(img, he(v[f"{s}/FromImage/weight"])), v[f"{s}/FromImage/bias"]))
            h = t if h is None else h + t
        t = h
        h = lrelu(bias(conv_same(h, he(v[f"{s}/Conv0/weight"])), v[f"{s}/Conv0/bias"]))
        h = lrelu(bias(conv_downsample(h, he(v[f"{s}/Conv1_down/weight"])), v[f"{s}/Conv1_down/bias"]))
        if arch == "resnet":
            h = (h + conv_downsample(t, he(v[f"{s}/Skip/weight"]))) / SQRT2
        if arch == "skip":
            img = downsample(img)
    s = scope_name(base, 2)
    if arch == "skip":
        h = h + lrelu(bias(conv_same(img, he(v[f"{s}/FromImage/weight"])), v[f"{s}/FromImage/bias"]))
    h = mbstd(h, group)
    h = lrelu(bias(conv_same(h, he(v[f"{s}/Conv/weight"])), v[f"{s}/Conv/bias"]))
    h = h.reshape(h.shape[0], -1)
    h = lrelu(h @ he(v[f"{s}/Dense0/weight"]) + v[f"{s}/Dense0/bias"])
    out = h @ he(v["Output/weight"]) + v["Output/bias"]
    return out if labels is None else (out * labels).sum(axis=1, keepdims=True)
