"""Generation, style mixing and interpolation with a trained generator (spec §7.1), and their writers.

Every seed gives z = RandomState(seed).randn(1, z_dim) as the original; with noise_mode="random" the noise maps
are drawn from the same RandomState after z, so a seed and the options always give the same volume (the
original's randomize_noise made it irreproducible). Volumes are float32 [N, X, Y, Z, C] in the network's
[-1, 1]; the writers store NIfTI in the training data's [0, 1] on the preset's centred RAS grid.
"""
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf3dstylegan.data.nifti import save_volume
from tf3dstylegan.training.preview import GAP, middle_slices, preview_grid, tile_grid, volume_tile, write_png

PLANES = ("sagittal", "coronal", "axial")  # the order of preview.middle_slices


def parse_int_list(text):
    """'0-3,7' -> [0, 1, 2, 3, 7]; ValueError on anything else."""
    values = []
    for part in str(text).replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"expected integers or ranges like 0-9, got {text!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"empty range {part!r}")
        values += range(first, last + 1)
    return values


def seed_inputs(G, seed):
    """(z [z_dim], noise maps [x, y, z, 1] per style layer) drawn from RandomState(seed), z first."""
    rng = np.random.RandomState(seed)
    z = rng.randn(G.z_dim).astype(np.float32)
    noise = [rng.randn(*shape[1:]).astype(np.float32) for shape in G.synthesis.noise_shapes]
    return z, noise


def seed_styles(G, seeds, psi=1.0, cutoff=None):
    """Truncated ws [N, num_ws, w_dim] of the seeds' z."""
    z = np.stack([seed_inputs(G, s)[0] for s in seeds])           # [N, z_dim]
    return G.truncate(G.mapping(z), psi, cutoff).numpy()


def seed_noise(G, seeds):
    """Per style layer the stacked noise maps [N, x, y, z, 1] of the seeds."""
    per_seed = [seed_inputs(G, s)[1] for s in seeds]
    return [np.stack(maps) for maps in zip(*per_seed)]


def compiled_synthesis(G, noise_mode="const", slab_size=None):
    """A compiled synthesis pass: (ws [b, num_ws, w_dim], noise maps [b, x, y, z, 1] per layer or None) ->
    volumes [b, X, Y, Z, C] as NumPy. slab_size: see SynthesisNetwork (less memory, same volumes)."""
    run = tf.function(lambda ws, noise: G.synthesis(ws, noise_mode=noise_mode, noise=noise, slab_size=slab_size),
                      reduce_retracing=True)

    def synthesize_batch(ws, noise=None):
        noise = None if noise is None else [tf.constant(n, tf.float32) for n in noise]
        return run(tf.constant(ws, tf.float32), noise).numpy()
    return synthesize_batch


def synthesize(G, ws, noise_mode="const", noise=None, batch_size=4, slab_size=None):
    """ws [N, num_ws, w_dim] (+ optional noise maps [N, x, y, z, 1] per layer) -> volumes [N, X, Y, Z, C]."""
    run = compiled_synthesis(G, noise_mode, slab_size)
    return np.concatenate([run(ws[i:i + batch_size], None if noise is None else [n[i:i + batch_size] for n in noise])
                           for i in range(0, len(ws), batch_size)])


def _noise_for(G, seeds, noise_mode):
    return seed_noise(G, seeds) if noise_mode == "random" else None


def generated_batches(G, seeds, psi=1.0, noise_mode="const", cutoff=None, batch_size=4, slab_size=None):
    """Yields (seeds, volumes [b, X, Y, Z, C] in [-1, 1]) batch by batch, holding one batch at a time."""
    run = compiled_synthesis(G, noise_mode, slab_size)
    seeds = list(seeds)
    for i in range(0, len(seeds), batch_size):
        batch = seeds[i:i + batch_size]
        yield batch, run(seed_styles(G, batch, psi, cutoff), _noise_for(G, batch, noise_mode))


def generate_volumes(G, seeds, psi=1.0, noise_mode="const", cutoff=None, batch_size=4, slab_size=None):
    """Volumes [N, X, Y, Z, C] in [-1, 1] of the seeds, truncation psi on style layers < cutoff (all if None)."""
    return np.concatenate([volumes for _, volumes in
                           generated_batches(G, seeds, psi, noise_mode, cutoff, batch_size, slab_size)])


def check_styles(G, col_styles):
    """The style-layer indices as a sorted list; ValueError for indices outside [0, num_ws)."""
    bad = [i for i in col_styles if not 0 <= i < G.num_ws]
    if bad:
        raise ValueError(f"style layers {bad} out of range: this network has {G.num_ws} (0-{G.num_ws - 1})")
    return sorted(set(col_styles))


def style_mix(G, row_seeds, col_seeds, col_styles, psi=1.0, noise_mode="const", cutoff=None, batch_size=4,
              slab_size=None):
    """(row volumes [R, ...], column volumes [C, ...], mixed [R, C, ...]) (Fig. 5).

    Mixed (r, c) = the row seed's ws with the layers col_styles taken from the column seed, and the row seed's
    noise maps."""
    col_styles = check_styles(G, col_styles)
    rows, cols = (generate_volumes(G, s, psi, noise_mode, cutoff, batch_size, slab_size)
                  for s in (row_seeds, col_seeds))
    row_ws, col_ws = seed_styles(G, row_seeds, psi, cutoff), seed_styles(G, col_seeds, psi, cutoff)
    mixed_ws = np.repeat(row_ws[:, np.newaxis], len(col_seeds), axis=1)           # [R, C, num_ws, w_dim]
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
                slab_size=None):
    """Volumes [frames, X, Y, Z, C] from seed_a to seed_b (both included): linear in W or spherical in Z.

    With noise_mode="random" the seeds' noise maps are interpolated spherically too."""
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z', got {space!r}")
    if frames < 2:
        raise ValueError(f"need at least 2 frames, got {frames}")
    ts = np.linspace(0.0, 1.0, frames)
    if space == "w":
        w_a, w_b = seed_styles(G, [seed_a, seed_b], psi, cutoff)
        ws = np.stack([(1.0 - t) * w_a + t * w_b for t in ts]).astype(np.float32)
    else:
        z_a, z_b = seed_inputs(G, seed_a)[0], seed_inputs(G, seed_b)[0]
        z = np.stack([slerp(z_a, z_b, t) for t in ts]).astype(np.float32)
        ws = G.truncate(G.mapping(z), psi, cutoff).numpy()
    noise = None
    if noise_mode == "random":
        noise = [np.stack([slerp(n_a, n_b, t) for t in ts]).astype(np.float32)
                 for n_a, n_b in zip(seed_inputs(G, seed_a)[1], seed_inputs(G, seed_b)[1])]
    return synthesize(G, ws, noise_mode, noise, batch_size, slab_size)


# ----------------------------------------------------------------------------------------------- writers

def to_data_range(volume):
    """Network output [-1, 1] -> the training data's [0, 1] (clipped), float32."""
    return np.clip((np.asarray(volume, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def write_volumes(outdir, names, volumes, voxel_size, png=True):
    """Per volume `<name>.nii.gz` (float32 [0, 1], centred RAS affine) and `<name>.png` (three middle planes)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, volume in zip(names, volumes):
        save_volume(outdir / f"{name}.nii.gz", to_data_range(volume)[..., 0], voxel_size)
        if png:
            write_png(outdir / f"{name}.png", preview_grid(volume[np.newaxis], 1))


def plane_grid(cells, plane):
    """uint8 grid of one middle plane: cells a list of rows of [X, Y, Z, C] volumes in [-1, 1] (None = black)."""
    index = PLANES.index(plane)
    shape = next(v for row in cells for v in row if v is not None).shape
    h, w = middle_slices(np.zeros(shape[:3], np.float32))[index].shape
    grid = np.full((len(cells) * (h + GAP) - GAP, len(cells[0]) * (w + GAP) - GAP), -1.0, np.float32)
    for r, row in enumerate(cells):
        for c, volume in enumerate(row):
            if volume is not None:
                grid[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = \
                    middle_slices(volume[..., 0])[index]
    return np.clip(np.rint((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)


def montage_columns(count):
    """Tiles per row of a montage of `count` volumes: a near-square grid."""
    return int(np.ceil(np.sqrt(count)))


def write_generated(outdir, seeds, volumes, voxel_size, columns=None):
    """`seed%04d.nii.gz` + `.png` per seed and `montage.png` (all seeds, three planes each)."""
    write_generated_batches(outdir, [(seeds, volumes)], voxel_size, columns or montage_columns(len(seeds)))


def write_generated_batches(outdir, batches, voxel_size, columns):
    """write_generated for (seeds, volumes) batches (e.g. generated_batches), written as they come: only the
    montage's slices are kept. Returns the number of volumes written."""
    tiles = []
    for seeds, volumes in batches:
        write_volumes(outdir, [f"seed{s:04d}" for s in seeds], volumes, voxel_size)
        tiles += [volume_tile(v[..., 0]) for v in volumes]
    write_png(Path(outdir) / "montage.png", tile_grid(tiles, columns))
    return len(tiles)


def write_style_mix(outdir, row_seeds, col_seeds, rows, cols, mixed, voxel_size):
    """`mix-<row>-<col>.nii.gz` (+ .png) and `style_mix_<plane>.png`: column seeds across the top, row seeds
    down the left, mixed volumes inside."""
    names = [f"mix-{r:04d}-{c:04d}" for r in row_seeds for c in col_seeds]
    write_volumes(outdir, names, mixed.reshape((-1,) + mixed.shape[2:]), voxel_size)
    cells = [[None] + list(cols)] + [[rows[i]] + list(mixed[i]) for i in range(len(row_seeds))]
    for plane in PLANES:
        write_png(Path(outdir) / f"style_mix_{plane}.png", plane_grid(cells, plane))


def write_interpolation(outdir, seed_a, seed_b, frames, voxel_size, space="w"):
    """`interp-<space>-<a>-<b>-<i>.nii.gz` per frame and one strip PNG of all frames."""
    prefix = f"interp-{space}-{seed_a:04d}-{seed_b:04d}"
    write_volumes(outdir, [f"{prefix}-{i:03d}" for i in range(len(frames))], frames, voxel_size, png=False)
    write_png(Path(outdir) / f"{prefix}.png", preview_grid(frames, len(frames)))


def underscore_flag_names(argv):
    """`--noise-mode x` -> `--noise_mode x` (absl names use underscores); values are left alone."""
    out = list(argv[:1])
    for token in argv[1:]:
        if token.startswith("--") and token != "--":
            name, eq, value = token[2:].partition("=")
            token = f"--{name.replace('-', '_')}{eq}{value}"
        out.append(token)
    return out
