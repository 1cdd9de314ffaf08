"""Run the paper's Table 2 metrics (+ a 3D feature FID) for a generator against a dataset.

`compute_metrics(G, data, metrics=("fid_slices", "bmmd2", "msssim", "fid3d"), num=1000)` streams `num`
generated volumes and `num` real ones (half A), plus, with `reference=True`, `num` more real volumes
(half B, disjoint from A: real volumes alternate batch-wise between the halves, and a volume seen in A
may not reappear in B) for the paper's "Real" row. Keys (only those of the requested metrics):
  fid_sagittal, fid_axial, fid_coronal  FID of middle slices, generated vs real A (Inception pool3)
  bmmd2, bmmd2_std                      batch MMD² (dot-product kernel, [0, 1] data), generated vs real A
  msssim, msssim_std                    MS-SSIM 3D over disjoint pairs of generated volumes
  fid3d                                 FID of deepbet-encoder features, generated vs real A
and `real_<key>` for real A vs real B (MS-SSIM: over pairs of real A volumes).
"""
import hashlib
import os

import numpy as np

from tf3dstylegan.metrics import frechet, inception, mmd, msssim, slices

METRICS = ("fid_slices", "bmmd2", "msssim", "fid3d")


def real_batches(data, batch_size):
    """Iterator of float32 [b, X, Y, Z, C] batches in [-1, 1] from a records folder, an array or an iterable."""
    if isinstance(data, (str, os.PathLike)):
        from tf3dstylegan.data import make_dataset
        data = make_dataset(os.fspath(data), batch_size, shuffle=False, repeat=False)
    elif isinstance(data, np.ndarray):
        array = data
        data = (array[i:i + batch_size] for i in range(0, len(array), batch_size))
    return (np.asarray(batch, np.float32) for batch in data)


def generated_batches(G, num, batch_size, seed, truncation_psi=1.0, noise_mode="const"):
    """`num` generated volumes in batches: z ~ N(0, I) from a NumPy generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    for start in range(0, num, batch_size):
        z = rng.standard_normal((min(batch_size, num - start), G.z_dim)).astype(np.float32)
        yield np.asarray(G(z, truncation_psi=truncation_psi, noise_mode=noise_mode), np.float32)


class VolumeReader:
    """Hands out exactly the requested number of volumes from a stream of batches."""

    def __init__(self, batches, what, needed):
        self.batches, self.what, self.needed, self.pending, self.count = iter(batches), what, needed, [], 0

    def take(self, n):
        """[n, X, Y, Z, C]; ValueError naming the data when the stream runs out."""
        while len(self.pending) < n:
            batch = next(self.batches, None)
            if batch is None:
                raise ValueError(f"{self.what}: only {self.count + len(self.pending)} volumes, "
                                 f"{self.needed} needed")
            self.pending.extend(batch)
        out, self.pending = np.stack(self.pending[:n]), self.pending[n:]
        self.count += n
        return out


class FeatureExtractors:
    """The networks the metrics need, built once (reuse one across calls, e.g. during training)."""

    def __init__(self, metrics, inception_weights=None, deepbet_weights=None, cache_dir=None, download=True):
        from tf3dstylegan.metrics import weights
        self.inception = self.deepbet = None
        if "fid_slices" in metrics:
            path = inception_weights or weights.ensure_weights("inception", cache_dir, download=download)
            self.inception = inception.InceptionFeatures(weights.load_weights("inception", path))
        if "fid3d" in metrics:
            from tf3dstylegan.metrics import deepbet
            path = deepbet_weights or weights.ensure_weights("deepbet", cache_dir, download=download)
            self.deepbet = deepbet.DeepbetFeatures(weights.load_weights("deepbet", path))


class VolumeSummary:
    """Per-set accumulator: slice features, 3D features and MS-SSIM of consecutive pairs."""

    def __init__(self, metrics, extractors):
        self.metrics, self.extractors = metrics, extractors
        self.slice_features = {plane: [] for plane in slices.PLANES}
        self.volume_features, self.msssim, self._unpaired = [], [], None

    def add(self, volumes):  # volumes: [b, X, Y, Z, C] in [-1, 1]
        if "fid_slices" in self.metrics:
            for plane, images in slices.middle_slices(volumes).items():
                self.slice_features[plane].append(self.extractors.inception(inception.to_uint8_range(images)))
        if "fid3d" in self.metrics:
            self.volume_features.append(self.extractors.deepbet(volumes))
        if "msssim" in self.metrics:
            unit = mmd.to_unit_range(volumes)
            if self._unpaired is not None:
                unit = np.concatenate([self._unpaired[None], unit])
            self._unpaired = unit[-1] if len(unit) % 2 else None
            self.msssim.extend(msssim.pairwise_ms_ssim(unit))


def _compare(results, prefix, metrics, a, b, mmd_values):
    """Fill results[prefix + key] comparing summaries a (evaluated set) and b (real A)."""
    if "fid_slices" in metrics:
        for plane in slices.PLANES:
            results[f"{prefix}fid_{plane}"] = frechet.fid_from_features(
                np.concatenate(a.slice_features[plane]), np.concatenate(b.slice_features[plane]))
    if "fid3d" in metrics:
        results[f"{prefix}fid3d"] = frechet.fid_from_features(np.concatenate(a.volume_features),
                                                              np.concatenate(b.volume_features))
    if "bmmd2" in metrics:
        results[f"{prefix}bmmd2"] = float(np.mean(mmd_values))
        results[f"{prefix}bmmd2_std"] = float(np.std(mmd_values))


def _digest(volume):
    return hashlib.sha1(np.ascontiguousarray(volume).tobytes()).hexdigest()


def compute_metrics(G, data, metrics=METRICS, num=1000, batch_size=8, seed=0, reference=True,
                    extractors=None, truncation_psi=1.0, noise_mode="const", **extractor_kwargs):
    """{metric key: value} for generator G against `data` (records folder, array or iterable of batches).

    G=None computes only the real-vs-real reference values."""
    metrics = tuple(metrics)
    unknown = set(metrics) - set(METRICS)
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    if G is None and not reference:
        raise ValueError("nothing to compute: no generator and reference=False")
    if num < 2 or batch_size < 1:
        raise ValueError(f"need num >= 2 and batch_size >= 1, got {num} and {batch_size}")
    extractors = extractors or FeatureExtractors(metrics, **extractor_kwargs)
    what = os.fspath(data) if isinstance(data, (str, os.PathLike)) else "data"
    reals = VolumeReader(real_batches(data, batch_size), what, num * (2 if reference else 1))
    fakes = generated_batches(G, num, batch_size, seed, truncation_psi, noise_mode) if G is not None else None
    fake, real_a, real_b = (VolumeSummary(metrics, extractors) for _ in range(3))
    mmd_fake, mmd_real, seen_a = [], [], set()
    for start in range(0, num, batch_size):
        batch_a = reals.take(min(batch_size, num - start))
        unit_a = mmd.to_unit_range(batch_a)
        real_a.add(batch_a)
        seen_a.update(_digest(v) for v in batch_a)
        if fakes is not None:
            fake_batch = next(fakes)
            if fake_batch.shape[1:] != batch_a.shape[1:]:
                raise ValueError(f"{what}: volumes {batch_a.shape[1:]} do not match the generator's "
                                 f"{fake_batch.shape[1:]}")
            fake.add(fake_batch)
            if "bmmd2" in metrics:
                mmd_fake.append(mmd.batch_mmd2(mmd.to_unit_range(fake_batch), unit_a))
        if reference:
            batch_b = reals.take(len(batch_a))
            if any(_digest(v) in seen_a for v in batch_b):
                raise ValueError(f"{what}: fewer than {2 * num} distinct volumes for two disjoint halves")
            real_b.add(batch_b)
            if "bmmd2" in metrics:
                mmd_real.append(mmd.batch_mmd2(unit_a, mmd.to_unit_range(batch_b)))
    results = {"num": num}
    if G is not None:
        _compare(results, "", metrics, fake, real_a, mmd_fake)
        if "msssim" in metrics:
            results["msssim"], results["msssim_std"] = float(np.mean(fake.msssim)), float(np.std(fake.msssim))
    if reference:
        _compare(results, "real_", metrics, real_b, real_a, mmd_real)
        if "msssim" in metrics:
            results["real_msssim"] = float(np.mean(real_a.msssim))
            results["real_msssim_std"] = float(np.std(real_a.msssim))
    return results

