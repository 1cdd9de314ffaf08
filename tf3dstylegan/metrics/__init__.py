"""Evaluation metrics: the paper's Table 2 (slice-wise FID, bMMD², MS-SSIM 3D), FID/KID/precision/recall in
3D feature spaces (deepbet, MedicalNet ResNet-50), a memorisation check, and 95 % ranges for every value;
for conditional generators the same per category or bin of a covariate, and a covariate effect check.

Heavy modules (TensorFlow models) are imported lazily; `compute_metrics` is the entry point (defined in
`tf3dstylegan.metrics.per_condition`, over `runner.evaluate`);
`python -m tf3dstylegan metrics` is the command.
"""


def __getattr__(name):
    """`compute_metrics` (tf3dstylegan.metrics.per_condition), imported when first used."""
    if name == "compute_metrics":
        from tf3dstylegan.metrics.per_condition import compute_metrics
        return compute_metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["compute_metrics"]
