"""projected_w.npz: a projection (projector.Projection) with what it was made with, read back only by its network.

The file holds `w` [1, num_ws, dlatent_size], `noise0..` (per style layer [1, x, y, z, 1]), for a conditional
network `labels` [L] and `condition` (the covariates by name, JSON, when the network has names), for a projection
in Z `z` [1, latent_size], and `network`: the SHA-256 fingerprint of the generator (its model config and every
weight), so that a projection is never re-synthesised by another network. Members are plain arrays (no pickles);
each one's size is checked against what the network expects before it is read.
"""
import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import keras
import numpy as np

from tf3dstylegan import conditions
from tf3dstylegan.io import atomic_path

FORMAT = "tf3dstylegan-projection-v1"
HEADER_BYTES = 4096  # an .npy member's header, beside its data


def network_fingerprint(G) -> str:
    """Hex SHA-256 of generator G's model config (as JSON) and of all its weights (shape, dtype, bytes), in order."""
    digest = hashlib.sha256(json.dumps(G.config.to_dict(), sort_keys=True).encode())
    for weight in G.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class ProjectedSubject:
    """What projected_w.npz holds."""
    w: np.ndarray                          # [1, num_ws, dlatent_size]
    noises: List[np.ndarray]               # per style layer [1, x, y, z, 1]
    network: str                           # network_fingerprint of the generator it was made with
    labels: Optional[np.ndarray] = None    # [L] the condition it was projected under
    condition: Optional[Dict] = None       # the same by covariate name ({"age": 72.0, "sex": "F"})
    z: Optional[np.ndarray] = None         # [1, latent_size] (projected in Z)

    @property
    def space(self) -> str:
        return "w" if self.z is None else "z"


def save_projection(path, G, projection):
    """Write a projector.Projection of G to `path` (projected_w.npz) atomically, with G's fingerprint and the
    projection's condition by name."""
    members = {"format": np.array(FORMAT), "network": np.array(network_fingerprint(G)), "w": projection.w,
               **{f"noise{i}": n for i, n in enumerate(projection.noises)}}
    if projection.labels is not None:
        members["labels"] = projection.labels
        encoding = conditions.label_encoding(G)
        if encoding is not None:
            members["condition"] = np.array(json.dumps(encoding.decode(projection.labels)))
    if projection.z is not None:
        members["z"] = projection.z
    with atomic_path(path) as tmp:
        np.savez(tmp, **members)


def _expected_shapes(G) -> Dict:
    shapes = {"w": (1, G.num_ws, G.dlatent_size), "z": (1, G.latent_size), "labels": (G.config.label_size,)}
    shapes.update({f"noise{i}": tuple(s) for i, s in enumerate(G.synthesis.noise_shapes)})
    return shapes


def load_projection(path, G) -> ProjectedSubject:
    """The projection in `path`, made with G; ValueError (one line naming the file) when it is not a projection,
    is damaged, does not fit G or was made with another network."""
    path = Path(path)
    shapes = _expected_shapes(G)
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename[:-4]: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path}: not a projected_w.npz ({type(err).__name__}: {err})") from None
    required = ["format", "network", "w"] + [f"noise{i}" for i in range(len(G.synthesis.noise_shapes))]
    if "w" in sizes and "format" not in sizes:
        raise ValueError(f"{path}: records neither its network nor its condition (made before projections did): "
                         "project the scan again")
    if missing := [name for name in required if name not in sizes]:
        raise ValueError(f"{path}: not a projected_w.npz of this package (no member {missing[0]!r})")
    for name, size in sizes.items():
        limit = 4 * int(np.prod(shapes[name])) if name in shapes else 1024
        if size > limit + HEADER_BYTES:
            raise ValueError(f"{path}: member {name!r} holds {size:,} bytes, more than this network's {name} needs")
    try:
        with np.load(path, allow_pickle=False) as npz:
            members = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: damaged ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if str(members["format"]) != FORMAT:
        raise ValueError(f"{path}: format {str(members['format'])!r}, expected {FORMAT!r}")
    fingerprint = network_fingerprint(G)
    if str(members["network"]) != fingerprint:
        raise ValueError(f"{path}: made with another network (fingerprint {str(members['network'])[:12]}, this "
                         f"network {fingerprint[:12]}): project the scan with this network")
    for name in shapes:
        if name in members and (members[name].shape != shapes[name] or members[name].dtype != np.float32
                                or not np.all(np.isfinite(members[name]))):
            raise ValueError(f"{path}: {name} is {members[name].dtype} {list(members[name].shape)}, expected finite "
                             f"float32 {list(shapes[name])}")
    if G.config.label_size and "labels" not in members:
        raise ValueError(f"{path}: records no condition, but this network is {conditions.describe(G)}")
    try:
        condition = json.loads(str(members["condition"])) if "condition" in members else None
    except ValueError:
        raise ValueError(f"{path}: its condition is not JSON") from None
    return ProjectedSubject(w=members["w"], noises=[members[f"noise{i}"] for i in range(len(G.synthesis.noise_shapes))],
                            network=fingerprint, labels=members.get("labels"), condition=condition,
                            z=members.get("z"))
