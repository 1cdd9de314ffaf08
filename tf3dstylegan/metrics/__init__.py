"""Evaluation metrics (paper Table 2): slice-wise FID, bMMD², MS-SSIM 3D, and a 3D feature FID.

Heavy modules (TensorFlow models) are imported lazily; `compute_metrics` is the entry point.
"""


def compute_metrics(G, data, **kwargs):
    """See `tf3dstylegan.metrics.runner.compute_metrics`."""
    from tf3dstylegan.metrics.runner import compute_metrics as _compute
    return _compute(G, data, **kwargs)


__all__ = ["compute_metrics"]
