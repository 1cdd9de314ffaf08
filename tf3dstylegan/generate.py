"""Generation, style mixing and interpolation with a trained generator, and their writers.

Every seed gives z = RandomState(seed).randn(1, latent_size) as the original; with noise_mode="random" the noise maps
come from the seed's own second stream (drawn only then), so a seed and the options always give the same volume
(the original's randomize_noise made it irreproducible). Volumes are float32 [N, X, Y, Z, C] in the network's
[-1, 1]; the writers store NIfTI in the training data's [0, 1] on the preset's centred RAS grid.

A conditional generator takes `labels`: [N, L] (one per volume) or [L] (the same for all); see
tf3dstylegan.conditions for covariates by name. Truncation pulls towards the network's one tracked w_avg
(the average over all conditions), so psi < 1 also weakens the condition.
"""
import collections.abc
import itertools
import re
from pathlib import Path

import numpy as np

from tf3dstylegan.conditions import batch_labels, sweep_labels, value_names
from tf3dstylegan.data.nifti import save_volume
from tf3dstylegan.io import (GAP, PLANES, display_scale, plane_grid, preview_grid, tile_grid, to_unit_range,
                             volume_tile, write_json_atomic, write_png)
from tf3dstylegan.sampling import compiled_synthesis, synthesize, to_numpy

MAX_SEED = 2 ** 32 - 1  # numpy.random.RandomState takes seeds in [0, 2**32)
MONTAGE_LIMIT = 64  # montage.png shows at most this many volumes


class SeedRanges(collections.abc.Sequence):
    """'0-3,7' as a sequence of ints [0, 1, 2, 3, 7] that holds only its ranges (any length, no list built)."""

    def __init__(self, text):
        self.ranges = []
        for part in str(text).replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ValueError(f"expected integers or ranges like 0-9, got {text!r}")
            first, last = int(match[1]), int(match[2] or match[1])
            if last < first:
                raise ValueError(f"empty range {part!r} in {text!r}")
            if last > MAX_SEED:
                raise ValueError(f"{last} is too large: seeds go up to {MAX_SEED}")
            self.ranges.append(range(first, last + 1))

    def __len__(self):
        return sum(len(r) for r in self.ranges)

    def __eq__(self, other):
        return isinstance(other, (list, tuple, SeedRanges)) and len(self) == len(other) and all(
            a == b for a, b in zip(self, other))

    def __iter__(self):
        return itertools.chain.from_iterable(self.ranges)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        for r in self.ranges if position >= 0 else ():
            if position < len(r):
                return r[position]
            position -= len(r)
        raise IndexError(f"seed index {index} out of range for {len(self)} seeds")


def parse_int_list(text):
    """'0-3,7' -> [0, 1, 2, 3, 7] (a SeedRanges: ranges are not expanded); ValueError on anything else."""
    return SeedRanges(text)


NOISE_STREAM = 1  # the key of a seed's noise-map stream, beside its latent's (numpy SeedSequence entropy)


def seed_latent(G, seed):
    """z [latent_size] of a seed: RandomState(seed).randn(latent_size), as the original."""
    return np.random.RandomState(seed).randn(G.latent_size).astype(np.float32)


def seed_noise(G, seeds):
    """Per style layer the noise maps [N, x, y, z, 1] of the seeds, each seed's from its own stream (independent of
    its latent's, so z never costs a draw of the maps)."""
    per_seed = [[rng.standard_normal(shape[1:], np.float32) for shape in G.synthesis.noise_shapes]
                for rng in (np.random.default_rng([seed, NOISE_STREAM]) for seed in seeds)]
    return [np.stack(maps) for maps in zip(*per_seed, strict=True)]


def seed_styles(G, seeds, psi=1.0, cutoff=None, labels=None):
    """Truncated ws [N, num_ws, dlatent_size] of the seeds' z (under labels [N, L] or [L] when G is conditional)."""
    z = np.stack([seed_latent(G, s) for s in seeds])                             # [N, latent_size]
    return to_numpy(G.truncate(G.mapping(z, batch_labels(G, labels, len(z))), psi, cutoff))


def _noise_for(G, seeds, noise_mode):
    return seed_noise(G, seeds) if noise_mode == "random" else None


def generated_batches(G, seeds, psi=1.0, noise_mode="const", cutoff=None, batch_size=4, slab_size=None,
                      labels=None):
    """Yields (seeds, volumes [b, X, Y, Z, C] in [-1, 1]) batch by batch, holding one batch at a time."""
    per_seed = np.ndim(labels) == 2
    labels = batch_labels(G, labels, len(seeds) if per_seed else 1)            # checked before any work
    labels = labels if per_seed or labels is None else labels[0]
    run = compiled_synthesis(G, noise_mode, slab_size)
    seeds, start = iter(seeds), 0
    while batch := list(itertools.islice(seeds, batch_size)):
        rows = labels[start:start + len(batch)] if per_seed else labels
        yield batch, run(seed_styles(G, batch, psi, cutoff, rows), _noise_for(G, batch, noise_mode))
        start += len(batch)


def generate_volumes(G, seeds, psi=1.0, noise_mode="const", cutoff=None, batch_size=4, slab_size=None,
                     labels=None):
    """Volumes [N, X, Y, Z, C] in [-1, 1] of the seeds, truncation psi on style layers < cutoff (all if None)."""
    return np.concatenate([volumes for _, volumes in
                           generated_batches(G, seeds, psi, noise_mode, cutoff, batch_size, slab_size, labels)])


def check_styles(G, col_styles):
    """The style-layer indices as a sorted list; ValueError for indices outside [0, num_ws)."""
    bad = [i for i in col_styles if not 0 <= i < G.num_ws]
    if bad:
        raise ValueError(f"style layers {bad} out of range: this network has {G.num_ws} (0-{G.num_ws - 1})")
    return sorted(set(col_styles))


def style_mix(G, row_seeds, col_seeds, col_styles, psi=1.0, noise_mode="const", cutoff=None, batch_size=4,
              slab_size=None, labels=None, col_labels=None):
    """(row volumes [R, ...], column volumes [C, ...], mixed [R, C, ...]) (Fig. 5).

    Mixed (r, c) = the row seed's ws with the layers col_styles taken from the column seed, and the row seed's
    noise maps. labels: of the row seeds ([R, L] or [L]); col_labels: of the column seeds ([C, L] or [L];
    default: labels when that is one [L] vector)."""
    col_styles = check_styles(G, col_styles)
    col_labels = labels if col_labels is None and np.ndim(labels) < 2 else col_labels
    rows, cols = (generate_volumes(G, s, psi, noise_mode, cutoff, batch_size, slab_size, lab)
                  for s, lab in ((row_seeds, labels), (col_seeds, col_labels)))
    row_ws, col_ws = seed_styles(G, row_seeds, psi, cutoff, labels), seed_styles(G, col_seeds, psi, cutoff, col_labels)
    mixed_ws = np.repeat(row_ws[:, np.newaxis], len(col_seeds), axis=1)           # [R, C, num_ws, dlatent_size]
    mixed_ws[:, :, col_styles] = col_ws[np.newaxis][:, :, col_styles]
    noise = _noise_for(G, [r for r in row_seeds for _ in col_seeds], noise_mode)
    mixed = synthesize(G, mixed_ws.reshape((-1,) + row_ws.shape[1:]), noise_mode, noise, batch_size, slab_size)
    return rows, cols, mixed.reshape((len(row_seeds), len(col_seeds)) + mixed.shape[1:])


def slerp(a, b, t):
    """Spherical interpolation of two arrays (as flat vectors) at t in [0, 1]; linear when nearly parallel."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolate(G, seed_a, seed_b, frames, space="w", psi=1.0, noise_mode="const", cutoff=None, batch_size=4,
                slab_size=None, labels=None):
    """Volumes [frames, X, Y, Z, C] from seed_a to seed_b (both included): linear in W or spherical in Z.

    With noise_mode="random" the seeds' noise maps are interpolated spherically too. labels: [L] (both ends)
    or [2, L] (seed_a's, seed_b's; in Z space the labels are interpolated linearly)."""
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z', got {space!r}")
    if frames < 2:
        raise ValueError(f"need at least 2 frames, got {frames}")
    ts = np.linspace(0.0, 1.0, frames)
    if space == "w":
        w_a, w_b = seed_styles(G, [seed_a, seed_b], psi, cutoff, labels)
        ws = np.stack([(1.0 - t) * w_a + t * w_b for t in ts]).astype(np.float32)
    else:
        z_a, z_b = seed_latent(G, seed_a), seed_latent(G, seed_b)
        z = np.stack([slerp(z_a, z_b, t) for t in ts]).astype(np.float32)
        ends = batch_labels(G, labels, 2)                                   # [2, L] or None
        frame_labels = None if ends is None else np.stack([(1.0 - t) * ends[0] + t * ends[1] for t in ts])
        ws = to_numpy(G.truncate(G.mapping(z, frame_labels), psi, cutoff))
    noise = None
    if noise_mode == "random":
        noise = [np.stack([slerp(n_a, n_b, t) for t in ts]).astype(np.float32)
                 for n_a, n_b in seed_noise(G, [seed_a, seed_b])]
    return synthesize(G, ws, noise_mode, noise, batch_size, slab_size)


def sweep_batches(G, seeds, name, values, base_condition=None, psi=1.0, noise_mode="const", cutoff=None,
                  batch_size=4, slab_size=None):
    """Yields (seed, volumes [V, X, Y, Z, C]) seed by seed: the seed's z and noise maps with covariate `name`
    at each of `values` and the other covariates at base_condition ({name: value} or 'sex=F')."""
    labels = sweep_labels(G, name, values, base_condition)                     # [V, L], checked before any work
    chunks = [labels[i:i + batch_size] for i in range(0, len(labels), batch_size)]
    run = compiled_synthesis(G, noise_mode, slab_size)
    for seed in seeds:
        z = seed_latent(G, seed)
        noise = [maps[0] for maps in seed_noise(G, [seed])] if noise_mode == "random" else None
        volumes = []
        for rows in chunks:                                                    # rows: [b, L]
            ws = to_numpy(G.truncate(G.mapping(np.repeat(z[np.newaxis], len(rows), axis=0), rows), psi, cutoff))
            maps = [np.repeat(n[np.newaxis], len(rows), axis=0) for n in noise] if noise_mode == "random" else None
            volumes.append(run(ws, maps))
        yield seed, np.concatenate(volumes)


def sweep(G, seeds, name, values, base_condition=None, **options):
    """Volumes [S, V, X, Y, Z, C]: per seed (row) the covariate `name` swept over `values`, everything else
    fixed (see sweep_batches; options: psi, noise_mode, cutoff, batch_size, slab_size)."""
    return np.stack([volumes for _, volumes in sweep_batches(G, seeds, name, values, base_condition, **options)])


# ----------------------------------------------------------------------------------------------- writers

def write_volumes(outdir, names, volumes, voxel_size, png=True):
    """Per volume `<name>.nii.gz` (float32 [0, 1], centred RAS affine) and `<name>.png` (three middle planes)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, volume in zip(names, volumes):
        if not np.all(np.isfinite(volume)):
            raise ValueError(f"{name}: the generator produced non-finite voxels (NaN or Inf weights?); not written")
        save_volume(outdir / f"{name}.nii.gz", to_unit_range(volume)[..., 0], voxel_size)
        if png:
            write_png(outdir / f"{name}.png", preview_grid(volume[np.newaxis], 1))


def montage_columns(count):
    """Tiles per row of a montage of `count` volumes (at most MONTAGE_LIMIT shown): a near-square grid."""
    return int(np.ceil(np.sqrt(min(count, MONTAGE_LIMIT))))


def write_generated(outdir, seeds, volumes, voxel_size, columns=None):
    """`seed%04d.nii.gz` + `.png` per seed and `montage.png` (all seeds, three planes each)."""
    write_generated_batches(outdir, [(seeds, volumes)], voxel_size, columns or montage_columns(len(seeds)))


def write_generated_batches(outdir, batches, voxel_size, columns):
    """write_generated for (seeds, volumes) batches (e.g. generated_batches), written as they come: only the
    montage's slices (of the first MONTAGE_LIMIT volumes) are kept. Returns the number of volumes written."""
    tiles, count = [], 0
    for seeds, volumes in batches:
        write_volumes(outdir, [f"seed{s:04d}" for s in seeds], volumes, voxel_size)
        tiles += [volume_tile(v[..., 0], display_scale(v.shape)) for v in volumes[:max(0, MONTAGE_LIMIT - len(tiles))]]
        count += len(volumes)
    write_png(Path(outdir) / "montage.png", tile_grid(tiles, columns))
    return count


def write_style_mix(outdir, row_seeds, col_seeds, rows, cols, mixed, voxel_size):
    """`mix-<row>-<col>.nii.gz` (+ .png) and `style_mix_<plane>.png`: column seeds across the top, row seeds
    down the left, mixed volumes inside."""
    names = [f"mix-{r:04d}-{c:04d}" for r in row_seeds for c in col_seeds]
    write_volumes(outdir, names, mixed.reshape((-1,) + mixed.shape[2:]), voxel_size)
    cells = [[None] + list(cols)] + [[rows[i]] + list(mixed[i]) for i in range(len(row_seeds))]
    for plane in PLANES:
        write_png(Path(outdir) / f"style_mix_{plane}.png", plane_grid(cells, plane))


def write_sweep(outdir, name, values, batches, voxel_size, condition=None):
    """`sweep-seed<seed>-<name>-<value>.nii.gz` per volume of the (seed, volumes [V, ...]) batches (e.g.
    sweep_batches) as they come, `sweep_<plane>.png` (a row per seed, the first MONTAGE_LIMIT; a column per
    value) and sweep.json (the covariate, its values, the seeds and the fixed condition). Returns the seeds."""
    names, seeds, row_images = value_names(name, values), [], {plane: [] for plane in PLANES}
    for seed, volumes in batches:
        write_volumes(outdir, [f"sweep-seed{seed:04d}-{n}" for n in names], volumes, voxel_size, png=False)
        if len(seeds) < MONTAGE_LIMIT:
            for plane in PLANES:
                row_images[plane].append(plane_grid([list(volumes)], plane))
        seeds.append(seed)
    for plane, rows in row_images.items():
        gap = np.zeros((GAP, rows[0].shape[1]), np.uint8)
        write_png(Path(outdir) / f"sweep_{plane}.png", np.concatenate([r for row in rows for r in (gap, row)][1:]))
    write_json_atomic(Path(outdir) / "sweep.json", {"covariate": name, "values": list(values), "seeds": seeds,
                                                    "condition": dict(condition or {})})
    return seeds


def write_interpolation(outdir, seed_a, seed_b, frames, voxel_size, space="w"):
    """`interp-<space>-<a>-<b>-<i>.nii.gz` per frame and one strip PNG of all frames."""
    prefix = f"interp-{space}-{seed_a:04d}-{seed_b:04d}"
    write_volumes(outdir, [f"{prefix}-{i:03d}" for i in range(len(frames))], frames, voxel_size, png=False)
    write_png(Path(outdir) / f"{prefix}.png", preview_grid(frames, len(frames)))
