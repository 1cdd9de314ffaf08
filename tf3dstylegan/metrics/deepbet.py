"""Encoder of deepbet's 3D brain-extraction network (LinkNet3d, `deepbet==1.0.2`, MIT) as 3D-FID features.

The network (`data/models/model.pt`, a traced TorchScript module; weights converted to `.npz` by
`tf3dstylegan.metrics.weights`) was trained on T1 brain MRI; its Keras port, shared with skull stripping, is
`tf3dstylegan.preprocess.linknet`. Its encoder is a 3D ResNet-18 (`init`, `down0..down3`, channels 16-32-64-128);
the 3D FID uses the global mean of the `down3` output: 128-D features. Checked against the TorchScript
module with `bench/check_inception_port.py`: max |keras - torch| / max |torch| = 8.1e-7 (40x48x56) and
1.9e-6 (80x96x112), with float32 instance-norm statistics; the shared port now computes them in float64
(`bench/check_deepbet_port.py`: `down3` within 5e-7 of torch at 256^3, see docs/prepare.md).

Inputs are normalised as deepbet does: clip to the 0.5/99.5 % quantiles, scale to [0, 1], standardise,
then 0.226 * x + 0.449.
"""
import numpy as np
import keras

from tf3dstylegan.metrics.batched import BatchedModel, weight_dict
from tf3dstylegan.preprocess import linknet

FEATURE_DIM = 128


def build_encoder(weights):
    """Keras model: normalised volumes [B, X, Y, Z, 1] -> pooled `down3` features [B, 128]."""
    inputs = keras.Input((None, None, None, 1), name="volume")
    features = keras.layers.GlobalAveragePooling3D(name="pooled")(linknet.encoder(inputs, weights)[-1])
    return keras.Model(inputs, features, name="deepbet_encoder")


def down3_size(n):
    """Length of an axis of n voxels after the encoder (init conv, max-pool, three stride-2 blocks)."""
    n = (n - 1) // 2 + 1  # conv 7, stride 2, pad 3
    for _ in range(4):  # max-pool 3 / conv 3, stride 2, pad 1
        n = (n - 1) // 2 + 1
    return n


MIN_AXIS = 33  # smallest axis with down3_size >= 2: instance norm over a single voxel gives only zeros


def deepbet_normalize(volumes):
    """[-1, 1] volumes [B, X, Y, Z, 1] -> deepbet's input normalisation, per volume (float32)."""
    x = (np.asarray(volumes, np.float32) + 1.0) / 2.0
    out = np.empty_like(x)
    for i, v in enumerate(x):
        low, high = np.quantile(v, [0.005, 0.995])
        v = np.clip((v - low) / max(high - low, 1e-8), 0.0, 1.0)
        out[i] = 0.226 * (v - v.mean()) / max(v.std(ddof=1), 1e-8) + 0.449
    return out


class DeepbetFeatures(BatchedModel):
    """Callable: [-1, 1] volumes [N, X, Y, Z, 1] -> 128-D encoder features [N, 128] (float64)."""

    def __init__(self, weights, batch_size=4):
        super().__init__(build_encoder(weight_dict(weights)), batch_size)

    def encode(self, normalized):
        """Features of already-normalised volumes."""
        x = np.asarray(normalized, np.float32)
        if x.ndim != 5 or x.shape[-1] != 1:
            raise ValueError(f"deepbet input must be [N, X, Y, Z, 1], got {x.shape}")
        if min(x.shape[1:4]) < MIN_AXIS:
            raise ValueError(f"deepbet features need every axis >= {MIN_AXIS} voxels, got {x.shape[1:4]}")
        return self.features(x)

    def __call__(self, volumes):
        return self.encode(deepbet_normalize(volumes))
