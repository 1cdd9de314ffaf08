"""Evaluation metrics: the paper's Table 2 (slice-wise FID, bMMD², MS-SSIM 3D), FID/KID/precision/recall in
3D feature spaces (deepbet, MedicalNet ResNet-50), a memorisation check, and 95 % ranges for every value;
for conditional generators the same per category or bin of a covariate, and a covariate effect check.

Heavy modules (TensorFlow models) are imported lazily; `compute_metrics` is the entry point (see
`tf3dstylegan.metrics.runner` and, for `by=` and `effect=`, `tf3dstylegan.metrics.per_condition`);
`python -m tf3dstylegan metrics` is the command.
"""


def compute_metrics(G, data, *args, **kwargs):
    """See `tf3dstylegan.metrics.per_condition.compute_metrics` (`runner.compute_metrics` plus `by`, `effect`)."""
    from tf3dstylegan.metrics.per_condition import compute_metrics as _compute
    return _compute(G, data, *args, **kwargs)


__all__ = ["compute_metrics"]
