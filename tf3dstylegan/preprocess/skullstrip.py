"""Skull stripping as deepbet 1.0.2 does it (`deepbet/bet.py`: `BrainExtraction.run_model` and `postprocess`),
with its two networks ported to Keras (tf3dstylegan.preprocess.linknet).

On a scan in the closest canonical (RAS) voxel order, NaN set to 0:
1. resize to 128^3 (torch's 'nearest-exact'); low, high = its 0.5 % and 99.5 % quantiles;
2. the bounding-box network on it, normalised (`normalize`); the largest 26-connected component of
   probability > 0.5; its bounding box (slices whose mean exceeds 2 %) scaled to the scan, grown by 10 % of
   its size on each side;
3. that box of the scan resized to 256^3, normalised with the same low/high, through the brain network; its
   brain probability resized back into the box (zero outside);
4. mask = probability > 0.5, inside the box its largest 26-connected component with the holes filled.
"""
import numpy as np
from scipy import ndimage

SMALL_SHAPE, SHAPE = (128, 128, 128), (256, 256, 256)
QUANTILES = (0.005, 0.995)
BOX_MARGIN, BOX_THRESHOLD, THRESHOLD = 0.1, 0.02, 0.5


class NoBrainError(ValueError):
    """The bounding-box network found no brain."""


def resize_nearest_exact(volume, shape):
    """torch.nn.functional.interpolate(mode='nearest-exact'): source index floor((i + 0.5) * n_in / n_out)."""
    index = [np.minimum(np.floor((np.arange(m) + 0.5) * (n / m)).astype(np.int64), n - 1)
             for n, m in zip(volume.shape, shape)]
    return volume[np.ix_(*index)]


def normalize(volume, low, high):
    """deepbet's input: clip (x - low) / (high - low) to [0, 1], standardise (std with n - 1), * 0.226 + 0.449."""
    x = np.clip((np.asarray(volume, np.float64) - low) / (high - low), 0.0, 1.0)
    return (0.226 * (x - x.mean()) / x.std(ddof=1) + 0.449).astype(np.float32)


def largest_component(mask):
    """The largest 26-connected component of a boolean mask (all False if the mask is empty)."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3), bool))
    if count == 0:
        return np.zeros_like(mask, bool)
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def bounding_box(small_mask, shape, margin=BOX_MARGIN):
    """Slices of the scan (shape) around the brain of a small mask, as deepbet's get_bbox_with_margin."""
    boxes = []
    for axis, (n_small, n) in enumerate(zip(small_mask.shape, shape)):
        profile = small_mask.mean(axis=tuple(a for a in range(3) if a != axis))
        rows = np.flatnonzero(profile > BOX_THRESHOLD)
        if rows.size == 0:
            raise NoBrainError("deepbet found no brain (empty bounding box)")
        scale = n / n_small
        centre = np.round(scale * (rows.max() + 1 + rows.min()) / 2.0)
        size = np.round((1 + 2 * margin) * scale * (rows.max() + 1 - rows.min()))
        boxes.append(slice(max(0, int(centre - size / 2)), min(n, int(centre + size / 2))))
    return tuple(boxes)


class DeepbetStripper:
    """deepbet's brain extraction; `bbox_network` and `network` map normalised volumes [B, X, Y, Z, 1] to
    softmax probabilities [B, X, Y, Z, 2] (Keras models from tf3dstylegan.preprocess.linknet)."""

    def __init__(self, bbox_network, network):
        self.bbox_network, self.network = bbox_network, network

    @classmethod
    def from_weights(cls, bbox_weights, weights):
        """From {torch name: array} dicts of `bbox_model.pt` and `model.pt`."""
        from tf3dstylegan.preprocess.linknet import build_linknet  # pylint: disable=import-outside-toplevel
        return cls(build_linknet(bbox_weights, "deepbet_bbox"), build_linknet(weights, "deepbet"))

    @staticmethod
    def _brain_probability(network, volume):
        out = network.predict_on_batch(volume[np.newaxis, ..., np.newaxis])
        return np.asarray(out, np.float32)[0, ..., 1]

    def probability(self, volume):
        """(brain probability [X, Y, Z] float32, the box it was computed in) of a canonical scan."""
        volume = np.nan_to_num(np.asarray(volume, np.float32))
        small = resize_nearest_exact(volume, SMALL_SHAPE)
        low, high = np.quantile(small, QUANTILES)
        if not high > low:
            raise NoBrainError("constant image: deepbet cannot normalise it")
        small_mask = largest_component(self._brain_probability(self.bbox_network, normalize(small, low, high)) > 0.5)
        box = bounding_box(small_mask.astype(np.float32), volume.shape)
        crop = resize_nearest_exact(volume[box], SHAPE)
        probability = np.zeros(volume.shape, np.float32)
        box_shape = tuple(s.stop - s.start for s in box)
        probability[box] = resize_nearest_exact(self._brain_probability(self.network, normalize(crop, low, high)),
                                                box_shape)
        return probability, box

    def mask(self, volume):
        """Boolean brain mask [X, Y, Z] of a canonical scan (deepbet's threshold and post-processing)."""
        probability, box = self.probability(volume)
        mask = np.zeros(probability.shape, bool)
        mask[box] = ndimage.binary_fill_holes(largest_component(probability[box] > THRESHOLD))
        return mask
