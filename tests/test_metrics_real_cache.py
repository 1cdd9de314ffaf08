"""The metrics' cache of real-volume results: identical results, computed once, never stale."""
import shutil

import numpy as np

from test_metrics_command import write_records
from test_metrics_runner import StandInG, StubExtractors, real_volumes
from tf3dstylegan.metrics import real_cache, runner

METRICS = ["fid_slices", "bmmd2", "msssim", "fid3d", "memorisation"]
REQUEST = dict(metrics=METRICS, num=8, batch_size=4, seed=3, intervals=4)


class CountingExtractors(StubExtractors):
    """The stub feature networks, counting their calls; `digest` names their 'weights'."""

    def __init__(self, digest="stub-1"):
        self.digest, self.calls = digest, 0

    def inception(self, images):
        self.calls += 1
        return super().inception(images)

    def deepbet(self, volumes):
        self.calls += 1
        return super().deepbet(volumes)


def evaluate(data, cache, extractors=None, **overrides):
    extractors = extractors or CountingExtractors()
    results = runner.evaluate(StandInG(), data, extractors=extractors, cache_reals=cache is not None,
                                     cache_dir=cache, **{**REQUEST, **overrides})
    return results, extractors


def entries(cache):
    return sorted((cache / real_cache.FOLDER).glob("*.npz"))


def test_cached_reals_give_identical_results_and_are_computed_once(tmp_path):
    data, cache = write_records(tmp_path / "reals", (real_volumes(16)[..., 0] + 1) / 2), tmp_path / "cache"
    plain, _ = evaluate(data, None)
    first, first_networks = evaluate(data, cache)
    assert len(entries(cache)) == 1
    second, second_networks = evaluate(data, cache)
    assert first == plain and second == plain
    assert second_networks.calls * 3 == first_networks.calls  # generated volumes only, not real A and B
    assert not list((cache / real_cache.FOLDER).glob(".*"))  # no temporary file left


def test_changed_records_request_or_networks_never_read_a_stale_entry(tmp_path):
    data, cache = write_records(tmp_path / "reals", (real_volumes(16)[..., 0] + 1) / 2), tmp_path / "cache"
    evaluate(data, cache)
    other_networks, _ = evaluate(data, cache, CountingExtractors("stub-2"))
    assert len(entries(cache)) == 2
    evaluate(data, cache, num=4)
    assert len(entries(cache)) == 3
    shutil.rmtree(data)  # the same folder and file names and sizes, other volumes
    write_records(data, (real_volumes(16, seed=1)[..., 0] + 1) / 2)
    expected, _ = evaluate(data, None)
    found, _ = evaluate(data, cache)
    assert found == expected and found["real_fid3d"] != other_networks["real_fid3d"]


def test_unreadable_entry_is_recomputed_and_arrays_are_not_cached(tmp_path):
    data, cache = write_records(tmp_path / "reals", (real_volumes(16)[..., 0] + 1) / 2), tmp_path / "cache"
    plain, _ = evaluate(data, cache)
    entries(cache)[0].write_bytes(b"not an npz")
    again, networks = evaluate(data, cache)
    assert again == plain and networks.calls == 24  # 3 sets x 2 batches x (3 planes + deepbet)
    assert real_cache.load(entries(cache)[0]) is not None  # rewritten whole
    evaluate(real_volumes(16), tmp_path / "array-cache")
    assert not (tmp_path / "array-cache").exists()


def test_weights_digest_depends_on_names_shapes_and_values():
    weights = {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float32)}
    digest = real_cache.weights_digest(weights)
    assert digest == real_cache.weights_digest(dict(reversed(list(weights.items()))))
    assert digest != real_cache.weights_digest({**weights, "a": np.zeros((3, 2), np.float32)})
    assert digest != real_cache.weights_digest({**weights, "b": np.full(4, 1.0 + 1e-6, np.float32)})
    assert digest != real_cache.weights_digest({"c": weights["a"], "b": weights["b"]})
