"""Evaluate a generator against real volumes: the paper's Table 2 metrics, 3D feature metrics, memorisation.

`compute_metrics(G, data, metrics=DEFAULT_METRICS, num=1000)` streams `num` generated volumes and `num`
real ones (half A), plus, with `reference=True`, `num` more real volumes (half B, disjoint from A: real
volumes alternate batch-wise between the halves, and a volume seen in A may not reappear in B) for the
"Real" row. Metrics (result keys; `real_<key>` compares real B with real A, MS-SSIM uses real A's pairs):
  fid_slices   fid_sagittal, fid_axial, fid_coronal: FID of middle slices (Inception pool3)
  kid_slices   kid_sagittal, kid_axial, kid_coronal: KID of the same features
  bmmd2        bmmd2, bmmd2_std: batch MMD² (dot-product kernel, [0, 1] data)
  msssim       msssim, msssim_std: MS-SSIM 3D over disjoint pairs of the evaluated set
  fid3d, kid3d, pr3d                  FID, KID, precision3d/recall3d of deepbet-encoder features
  fid_medicalnet, kid_medicalnet, pr_medicalnet   the same on MedicalNet ResNet-50 features
  memorisation memorisation_fraction, _count, _threshold, _ncc_q05/_median/_q95/_max: nearest training
               volume by NCC (training set: `train_data`, else real A); `memorisation_png` gets the closest pairs
With `intervals=R` each metric also gets `<key>_lo`, `<key>_hi` (95 % range: its spread over R random
halves, centred on its value) and `<key>_n` (its sample count); `interval_method` says so in words.
A conditional generator's volumes get labels drawn from the real labels.
Per-condition evaluation (per_condition.compute_metrics, `by=`) calls `evaluate_streams` once per group.
"""
import hashlib
import os
import sys

import numpy as np

from tf3dstylegan import conditions
from tf3dstylegan.io import to_unit_range
from tf3dstylegan.metrics import extractors as feature_networks
from tf3dstylegan.metrics import inception, labelled, measures, memorisation, mmd, msssim, real_cache, slices
from tf3dstylegan.metrics import intervals as intervals_module

METRICS = ("fid_slices", "kid_slices", "bmmd2", "msssim", "fid3d", "kid3d", "pr3d",
           "fid_medicalnet", "kid_medicalnet", "pr_medicalnet", "memorisation")
DEFAULT_METRICS = ("fid_slices", "bmmd2", "msssim", "fid3d")
PROTOCOLS = {
    "paper": ("fid_slices", "bmmd2", "msssim"),
    "medicalnet": ("fid_medicalnet", "kid_medicalnet", "pr_medicalnet"),
}
FeatureExtractors = feature_networks.FeatureExtractors


def check_metrics(metrics):
    """The metrics as a tuple; ValueError naming unknown ones."""
    metrics = tuple(metrics)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    return metrics


def real_batches(data, batch_size):
    """Iterator of float32 [b, X, Y, Z, C] batches in [-1, 1] from a records folder, an array or an iterable."""
    if isinstance(data, (str, os.PathLike)):
        from tf3dstylegan.data import make_dataset
        data = make_dataset(os.fspath(data), batch_size, shuffle=False, repeat=False)
    elif isinstance(data, np.ndarray):
        array = data
        data = (array[i:i + batch_size] for i in range(0, len(array), batch_size))
    return (np.asarray(batch, np.float32) for batch in data)


def sampled_volumes(G, num, batch_size, seed, truncation_psi=1.0, noise_mode="const", labels=None):
    """`num` generated volumes [b, X, Y, Z, C] in batches (sampling.sampler: compiled): z ~ N(0, I) from a NumPy
    generator seeded with `seed`; for a conditional G, labels drawn with replacement from the rows of `labels`
    [M, L] (a second stream, seeded [seed, 1], so that the latents are the same with and without labels)."""
    from tf3dstylegan.sampling import sampler
    rng, label_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    if labels is not None and not len(labels):
        raise ValueError("no labels to draw the generated volumes' labels from")
    sample = sampler(G, truncation_psi, noise_mode)
    for start in range(0, num, batch_size):
        z = rng.standard_normal((min(batch_size, num - start), G.latent_size)).astype(np.float32)
        yield sample(z, None if labels is None else labels[label_rng.integers(0, len(labels), len(z))])


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


class VolumeSummary:
    """Per-set accumulator: features per space, MS-SSIM of consecutive pairs, pooled volumes (memorisation)."""

    def __init__(self, metrics, extractors):
        self.metrics, self.extractors = metrics, extractors
        self.spaces = feature_networks.feature_spaces(metrics)
        self._features = {}
        self.msssim, self._unpaired, self._pooled, self.pool_factor = [], None, [], None

    def add(self, volumes):  # volumes: [b, X, Y, Z, C] in [-1, 1]
        if "slices" in self.spaces:
            for plane, images in slices.plane_slices(volumes).items():
                self._add_features(plane, self.extractors.inception(inception.to_uint8_range(images)))
        for space in ("deepbet", "medicalnet"):
            if space in self.spaces:
                self._add_features(space, getattr(self.extractors, space)(volumes))
        if "msssim" in self.metrics:
            unit = to_unit_range(volumes)
            if self._unpaired is not None:
                unit = np.concatenate([self._unpaired[None], unit])
            self._unpaired = unit[-1] if len(unit) % 2 else None
            self.msssim.extend(msssim.pairwise_ms_ssim(unit))
        if "memorisation" in self.metrics:
            self.pool_factor = self.pool_factor or memorisation.pool_factor(volumes.shape[1:4])
            self._pooled.append(memorisation.pool_volumes(volumes, self.pool_factor))

    def _add_features(self, name, features):
        self._features.setdefault(name, []).append(features)

    @property
    def features(self):
        return {name: np.concatenate(parts) for name, parts in self._features.items()}

    @property
    def pooled(self):
        return np.concatenate(self._pooled)

    def to_arrays(self, prefix) -> dict:
        """{prefix/name: array} of everything this summary holds (real_cache stores it)."""
        arrays = {f"{prefix}/features/{name}": value for name, value in self.features.items()}
        arrays[f"{prefix}/msssim"] = np.asarray(self.msssim, np.float64)
        if self._pooled:
            arrays[f"{prefix}/pooled"], arrays[f"{prefix}/pool_factor"] = self.pooled, np.asarray(self.pool_factor)
        return arrays

    def restore(self, arrays, prefix):
        """Take the state of `to_arrays(prefix)` output."""
        start = f"{prefix}/features/"
        self._features = {k[len(start):]: [v] for k, v in arrays.items() if k.startswith(start)}
        self.msssim = list(arrays[f"{prefix}/msssim"])
        if f"{prefix}/pooled" in arrays:
            self._pooled, self.pool_factor = [arrays[f"{prefix}/pooled"]], int(arrays[f"{prefix}/pool_factor"])
        return self


def _digest(volume):
    return hashlib.sha1(np.ascontiguousarray(volume).tobytes()).hexdigest()


def _training_volumes(train_data, batch_size, real_a):
    """Pooled training volumes for memorisation: all of `train_data`, else real A's."""
    if train_data is None:
        return real_a.pooled
    pooled = [memorisation.pool_volumes(batch, real_a.pool_factor) for batch in real_batches(train_data, batch_size)]
    if not pooled:
        raise ValueError(f"{os.fspath(train_data) if isinstance(train_data, (str, os.PathLike)) else 'train_data'}: "
                         "no volumes")
    return np.concatenate(pooled)


def evaluate_streams(fake_batches, data, metrics, num, batch_size, reference, extractors, intervals=0, seed=0,
                     train_data=None, memorisation_png=None, cache_reals=False, cache_dir=None):
    """Results for batches of evaluated volumes (None: the real row only) against real `data`. cache_reals:
    keep what comes from a records folder's real volumes alone in the cache (real_cache) and reuse it."""
    what = os.fspath(data) if isinstance(data, (str, os.PathLike)) else "data"
    reals = VolumeReader(real_batches(data, batch_size), what, num * (2 if reference else 1))
    fake, real_a, real_b = (VolumeSummary(metrics, extractors) for _ in range(3))
    key = real_cache.cache_key(data, metrics, num, batch_size, reference, extractors.digest) if cache_reals else None
    entry = real_cache.entry_path(key, cache_dir) if key else None
    cached = real_cache.load(entry) if entry else None
    mmd_fake, mmd_real, seen_a = [], [], set()
    if cached is not None:
        try:
            real_a.restore(cached, "a")
            real_b.restore(cached, "b")
            mmd_real = list(cached["mmd_real"])
        except KeyError:  # an entry without what this request needs: computed anew
            cached, mmd_real = None, []
            real_a, real_b = VolumeSummary(metrics, extractors), VolumeSummary(metrics, extractors)
    summarise_reals = cached is None  # else only read (bMMD² of the fakes, the halves' disjointness)
    for start in range(0, num, batch_size):
        batch_a = reals.take(min(batch_size, num - start))
        unit_a = to_unit_range(batch_a)
        if summarise_reals:
            real_a.add(batch_a)
        seen_a.update(_digest(v) for v in batch_a)
        if fake_batches is not None:
            fake_batch = next(fake_batches)
            if fake_batch.shape[1:] != batch_a.shape[1:]:
                raise ValueError(f"{what}: volumes {batch_a.shape[1:]} do not match the generator's "
                                 f"{fake_batch.shape[1:]}")
            fake.add(fake_batch)
            if "bmmd2" in metrics:
                mmd_fake.append(mmd.batch_mmd2(to_unit_range(fake_batch), unit_a))
        if reference:
            batch_b = reals.take(len(batch_a))
            if any(_digest(v) in seen_a for v in batch_b):
                raise ValueError(f"{what}: fewer than {2 * num} distinct volumes for two disjoint halves")
            if summarise_reals:
                real_b.add(batch_b)
                if "bmmd2" in metrics:
                    mmd_real.append(mmd.batch_mmd2(unit_a, to_unit_range(batch_b)))
    if entry and summarise_reals:
        try:
            real_cache.save(entry, {**real_a.to_arrays("a"), **real_b.to_arrays("b"),
                                    "mmd_real": np.asarray(mmd_real, np.float64)})
        except OSError as err:  # the cache is an optimisation: the results stand without it
            print(f"note: {entry}: cannot write the real-volume cache entry ({err.strerror or err}); not cached",
                  file=sys.stderr)
    train = _training_volumes(train_data, batch_size, real_a) if "memorisation" in metrics else None
    rows = ([("", fake, mmd_fake, fake.msssim)] if fake_batches is not None else []) + (
        [("real_", real_b, mmd_real, real_a.msssim)] if reference else [])
    results = {"num": num, **({"interval_method": intervals_module.METHOD} if intervals else {})}
    for prefix, evaluated, mmd_values, pair_values in rows:
        results.update(_row_results(prefix, metrics, evaluated, real_a.features, mmd_values, pair_values, train,
                                    intervals, seed, None if prefix else memorisation_png))
    return results


def _row_results(prefix, metrics, evaluated, reference_features, mmd_values, pair_values, train, intervals, seed,
                 memorisation_png):
    """One row of the table (generated, or real B with prefix 'real_'): values, ranges, spreads."""
    found = measures.feature_measurements(metrics, prefix, evaluated.features, reference_features)
    if "bmmd2" in metrics:
        found.append(measures.mean_measurement(f"{prefix}bmmd2", mmd_values))
    if "msssim" in metrics:
        found.append(measures.mean_measurement(f"{prefix}msssim", pair_values))
    check = memorisation.check(evaluated.pooled, train) if train is not None else None
    if check is not None:
        found += measures.memorisation_measurements(prefix, check)
        if memorisation_png:
            from tf3dstylegan import io
            io.write_png(memorisation_png, memorisation.closest_pairs_image(evaluated.pooled, train, check))
    results = measures.measure(found, intervals, seed)
    if "bmmd2" in metrics:
        results[f"{prefix}bmmd2_std"] = float(np.std(mmd_values))
    if "msssim" in metrics:
        results[f"{prefix}msssim_std"] = float(np.std(pair_values))
    if check is not None:
        results.update(measures.memorisation_summary(prefix, check))
    return results


def check_arguments(G, metrics, num, batch_size, reference, intervals):
    """ValueError for a request that cannot be computed (before any work)."""
    if G is None and not reference:
        raise ValueError("nothing to compute: no generator and reference=False")
    if num < 2 or batch_size < 1:
        raise ValueError(f"need num >= 2 and batch_size >= 1, got {num} and {batch_size}")
    if intervals == 1 or intervals < 0:
        raise ValueError(f"intervals must be 0 (none) or >= 2 halves, got {intervals}")
    return check_metrics(metrics)


def evaluate(G, data, metrics=DEFAULT_METRICS, num=1000, batch_size=8, seed=0, reference=True, extractors=None,
             truncation_psi=1.0, noise_mode="const", intervals=0, train_data=None, memorisation_png=None, labels=None,
             label_encoding=None, cache_reals=False, **extractor_kwargs):
    """{metric key: value} for generator G against `data` (records folder, array or iterable of batches).

    G=None computes only the real-vs-real reference values. `intervals`: number of random halves for the
    95 % ranges (0: none). A conditional G gets labels drawn from the real labels: a records folder's, or
    `labels` [N, L] of the volumes in `data` (in `label_encoding`, default G's). `extractor_kwargs`:
    inception_weights, deepbet_weights, medicalnet_weights, cache_dir, download (see FeatureExtractors).
    cache_reals: compute what depends on a records folder's real volumes alone once, and keep it in cache_dir.
    Per-condition metrics and the covariate effect: tf3dstylegan.metrics.compute_metrics."""
    metrics = check_arguments(G, metrics, num, batch_size, reference, intervals)
    pool = None
    if G is not None and labelled.label_size(G):
        real = labelled.LabelledData.open(data, labels, label_encoding or conditions.label_encoding(G))
        pool = labelled.generator_labels(G, real.labels, real.encoding)
    extractors = extractors or FeatureExtractors(metrics, **extractor_kwargs)
    fakes = sampled_volumes(G, num, batch_size, seed, truncation_psi, noise_mode, pool) if G is not None else None
    return evaluate_streams(fakes, data, metrics, num, batch_size, reference, extractors, intervals, seed,
                            train_data, memorisation_png, cache_reals, extractor_kwargs.get("cache_dir"))
