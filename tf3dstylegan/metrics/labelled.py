"""Real volumes with their labels, and the labels a conditional generator is given to match them.

The real labels are in the data's encoding (labels.json beside the records); a generator has its own
(saved with it, fitted on its training data: a held-out split has other means and standard deviations).
Generated volumes get the real rows' covariate values encoded with the generator's encoding; a generator
without saved covariate names takes the data's label vectors as they are.
"""
import os

import numpy as np

from tf3dstylegan import conditions, usage


def label_size(G) -> int:
    """G's label_size: 0 for an unconditional generator (or a stand-in without a config)."""
    return getattr(getattr(G, "config", None), "label_size", 0)


class LabelledData:
    """Real volumes ([-1, 1]) and their labels [N, label_size] in `encoding` (a LabelEncoding or None).

    `source` is a records folder (labels read from beside it), an array [N, X, Y, Z, C], or None (volumes in
    an iterable that cannot be read again: the labels serve only as the generated volumes' labels)."""

    def __init__(self, source, labels, encoding, what):
        self.source, self.labels, self.encoding, self.what = source, np.asarray(labels, np.float32), encoding, what

    @classmethod
    def open(cls, data, labels=None, encoding=None):
        """From a records folder with labels, or an array with `labels` [N, L] (in `encoding`)."""
        if isinstance(data, (str, os.PathLike)):
            from tf3dstylegan.data.labels import read_labels
            what = os.fspath(data)
            encoding, labels = read_labels(what)
            if labels is None:
                raise ValueError(f"{what}: has no labels (*.labels); create it with "
                                 f"{usage.command('dataset')} create-from-images3d --labels TABLE")
            return cls(what, labels, encoding, what)
        if labels is None:
            raise ValueError("labels [N, label_size] of the real volumes are needed (or a records folder with labels)")
        labels = np.asarray(labels, np.float32)
        if labels.ndim != 2 or (isinstance(data, np.ndarray) and len(labels) != len(data)):
            raise ValueError(f"labels must be [N, label_size] for the N real volumes, got shape {labels.shape}")
        return cls(data if isinstance(data, np.ndarray) else None, labels, encoding, "data")

    def require_names(self):
        """The encoding; ValueError when the data's covariates have no names (an original-format labels file)."""
        if self.encoding is None:
            raise ValueError(f"{self.what}: its labels have no covariate names (labels.json)")
        return self.encoding

    def batches(self, batch_size, keep=None):
        """Iterator of (volumes [b, X, Y, Z, C] in [-1, 1], labels [b, L]), only the rows where keep(labels) is
        true (keep: labels [b, L] -> bool [b]); empty batches are left out."""
        if isinstance(self.source, str):
            from tf3dstylegan.data import make_dataset
            pairs = make_dataset(self.source, batch_size, shuffle=False, repeat=False, with_labels=True)
        elif isinstance(self.source, np.ndarray):
            pairs = ((self.source[i:i + batch_size], self.labels[i:i + batch_size])
                     for i in range(0, len(self.source), batch_size))
        else:
            raise ValueError("these real volumes are not stored with their labels (a records folder or an array)")
        for volumes, labels in pairs:
            volumes, labels = np.asarray(volumes, np.float32), np.asarray(labels, np.float32)
            if keep is not None:
                mask = np.asarray(keep(labels), bool)
                volumes, labels = volumes[mask], labels[mask]
            if len(volumes):
                yield volumes, labels

    def volumes(self, batch_size, keep=None):
        """The volumes of `batches` without their labels."""
        return (volumes for volumes, _ in self.batches(batch_size, keep))



def generator_labels(G, labels, encoding):
    """float32 [N, G's label_size]: label rows [N, L] of the data (in `encoding`, or None) as G takes them."""
    generator_encoding = conditions.label_encoding(G)
    labels = np.asarray(labels, np.float32)
    if generator_encoding is None or encoding is None:
        if labels.shape[1] != G.config.label_size:
            raise ValueError(f"the data's labels have {labels.shape[1]} values, the network takes "
                             f"{G.config.label_size}")
        return labels
    return encode_values(G, [encoding.decode(row) for row in labels])


def encode_values(G, values, encoding=None):
    """float32 [N, L]: covariate values ({name: value} each) in G's encoding (or `encoding` when G has none)."""
    target = conditions.label_encoding(G) or encoding
    if target is None:
        raise ValueError("neither the network nor the data names its covariates (no label encoding)")
    try:
        labels = target.encode_rows(values)
    except ValueError as err:
        raise ValueError(f"the network cannot take the data's covariates: {err}") from None
    if labels.shape[1] != G.config.label_size:
        raise ValueError(f"the data's labels have {labels.shape[1]} values, the network takes {G.config.label_size}")
    return labels
