"""Which feature network each metric needs, and building those networks once.

Feature spaces: `slices` (Inception-v3 pool3 of the three middle slices, 2048-D each), `deepbet` (deepbet
encoder, 128-D) and `medicalnet` (MedicalNet ResNet-50, 2048-D). FID and KID exist in all three,
precision/recall in the two 3D ones.
"""
import os

from tf3dstylegan.metrics import real_cache

METRIC_SPACES = {
    "fid_slices": "slices", "kid_slices": "slices",
    "fid3d": "deepbet", "kid3d": "deepbet", "pr3d": "deepbet",
    "fid_medicalnet": "medicalnet", "kid_medicalnet": "medicalnet", "pr_medicalnet": "medicalnet",
}


def feature_spaces(metrics):
    """The feature spaces the metrics need, in a fixed order."""
    needed = {METRIC_SPACES[m] for m in metrics if m in METRIC_SPACES}
    return [space for space in ("slices", "deepbet", "medicalnet") if space in needed]


def check_weight_files(metrics, inception_weights=None, deepbet_weights=None, medicalnet_weights=None):
    """ValueError naming the argument when a needed weights file is missing (before any work is done)."""
    spaces = feature_spaces(metrics)
    given = {"slices": ("inception_weights", inception_weights), "deepbet": ("deepbet_weights", deepbet_weights),
             "medicalnet": ("medicalnet_weights", medicalnet_weights)}
    for space in spaces:
        name, path = given[space]
        if space == "medicalnet" and path is None:
            raise ValueError(f"{name}: required by the MedicalNet metrics (the resnet_50_23dataset.pth file)")
        if path is not None and not os.path.isfile(path):
            problem = ("is a folder, not a weights file" if os.path.isdir(path) else
                       "is a broken or looping symbolic link" if os.path.lexists(path) else
                       "not a regular file" if os.path.exists(path) else "no such file")
            raise ValueError(f"{name}: {path}: {problem}")


class FeatureExtractors:
    """The networks the metrics need, built once (reuse one across calls, e.g. during training).

    Attributes `inception`, `deepbet`, `medicalnet`: callables or None."""

    def __init__(self, metrics, inception_weights=None, deepbet_weights=None, medicalnet_weights=None,
                 cache_dir=None, download=True):
        from tf3dstylegan.metrics import weights
        check_weight_files(metrics, inception_weights, deepbet_weights, medicalnet_weights)
        spaces = feature_spaces(metrics)
        self.inception = self.deepbet = self.medicalnet = None
        loaded = {}
        if "slices" in spaces:
            from tf3dstylegan.metrics import inception
            path = inception_weights or weights.ensure_weights("inception", cache_dir, download=download)
            loaded["slices"] = weights.read_network_weights("inception", path)
            self.inception = inception.InceptionFeatures(loaded["slices"])
        if "deepbet" in spaces:
            from tf3dstylegan.metrics import deepbet
            path = deepbet_weights or weights.ensure_weights("deepbet", cache_dir, download=download)
            loaded["deepbet"] = weights.read_network_weights("deepbet", path)
            self.deepbet = deepbet.DeepbetFeatures(loaded["deepbet"])
        if "medicalnet" in spaces:
            from tf3dstylegan.metrics import medicalnet
            try:
                loaded["medicalnet"] = medicalnet.read_backbone_weights(medicalnet_weights)
            except ValueError as e:
                raise ValueError(f"{medicalnet_weights}: {e}") from e
            self.medicalnet = medicalnet.MedicalNetFeatures(loaded["medicalnet"])
        # Identifies these networks (real_cache keys): space name and weights of each.
        self.digest = ",".join(f"{space}:{real_cache.weights_digest(w)}" for space, w in loaded.items())
