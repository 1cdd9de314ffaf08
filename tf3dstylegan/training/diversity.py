"""Diversity during training: MS-SSIM of generated pairs from fixed latents at every snapshot, beside the real pairs'
MS-SSIM (computed once per run), so that a mode collapse shows while it happens (`diversity/msssim_fakes` and
`diversity/msssim_reals` in the progress line, stats.jsonl and TensorBoard).

Generated pairs that are more alike than real pairs (a higher MS-SSIM) mean that G has lost diversity. The fakes
are G_ema's volumes (noise_mode "const", compiled: tf3dstylegan.sampling) of 2 * PAIRS latents fixed for the run
(seeded from the run's seed); the reals are the first 2 * PAIRS volumes of the records folder. Both use
metrics.msssim (disjoint consecutive pairs), a few pairs at a time.
"""
import itertools

import numpy as np

from tf3dstylegan.io import to_unit_range
from tf3dstylegan.metrics.msssim import WEIGHTS, pairwise_ms_ssim

PAIRS = 16
CHUNK = 8  # volumes generated or read at a time (4 pairs)
LATENT_STREAM = 2  # the latents' seed is [run seed, LATENT_STREAM]: not the previews' latents
MIN_AXIS = 2 ** (len(WEIGHTS) - 1)  # MS-SSIM's five scales need every axis >= 16 voxels


def real_pairs_msssim(data, pairs=PAIRS):
    """Mean MS-SSIM of the disjoint consecutive pairs among the first 2 * pairs volumes of a records folder (None
    when it holds fewer than 2)."""
    from tf3dstylegan.data.records import read_volumes
    volumes, values = iter(itertools.islice(read_volumes(data), 2 * pairs)), []  # [X, Y, Z, C] in [0, 1]
    while chunk := list(itertools.islice(volumes, CHUNK)):
        values.extend(pairwise_ms_ssim(np.stack(chunk)))
    return float(np.mean(values)) if values else None


class DiversityProbe:
    """`probe(sample)` -> {"diversity/msssim_fakes": ..., "diversity/msssim_reals": ...} (the reals' value when the
    data is a records folder); {} for volumes too small for MS-SSIM. sample: (z [b, latent], labels [b, L] or None)
    -> volumes [b, X, Y, Z, C] in [-1, 1], G_ema's sampling.sampler (psi 1, const noise)."""

    def __init__(self, cfg, data, seed, label_table=None, pairs=PAIRS):
        self.enabled = min(cfg.img_shape) >= MIN_AXIS
        rng = np.random.default_rng([seed, LATENT_STREAM])
        self.latents = rng.standard_normal((2 * pairs, cfg.latent_size)).astype(np.float32)  # [2P, latent]
        self.labels = None if label_table is None else np.resize(label_table, (2 * pairs, label_table.shape[1]))
        self.reals = real_pairs_msssim(data, pairs) if self.enabled and not callable(data) else None

    def __call__(self, sample):
        if not self.enabled:
            return {}
        values = []
        for start in range(0, len(self.latents), CHUNK):
            part = slice(start, start + CHUNK)
            labels = None if self.labels is None else self.labels[part]
            fakes = sample(self.latents[part], labels)  # [CHUNK, X, Y, Z, C] in [-1, 1]
            values.extend(pairwise_ms_ssim(to_unit_range(fakes)))
        out = {"diversity/msssim_fakes": float(np.mean(values))}
        if self.reals is not None:
            out["diversity/msssim_reals"] = self.reals
        return out
