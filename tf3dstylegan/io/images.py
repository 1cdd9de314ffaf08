"""Middle slices, preview grids and PNG files of [X, Y, Z] volumes.

Volumes are channels-last and RAS-oriented (X left-right, Y posterior-anterior, Z inferior-superior), so
the sagittal plane fixes X, the coronal plane fixes Y and the axial plane fixes Z.
"""
import struct
import zlib

import numpy as np

from tf3dstylegan.io.files import write_bytes_atomic

PLANES = ("sagittal", "coronal", "axial")
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # the fixed axis of an [X, Y, Z] volume
GAP = 2  # pixels between slices and between tiles
MIN_PANEL_PX = 96  # small volumes are enlarged (nearest neighbour) until a panel is at least this tall


def to_unit_range(volume):
    """Network output in [-1, 1] -> [0, 1] (clipped), float32."""
    return np.clip((np.asarray(volume, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def middle_slices(volume):
    """[X, Y, Z] -> (sagittal [Z, Y], coronal [Z, X], axial [Y, X]) for display, the last voxel axis up."""
    volume = np.asarray(volume)
    return tuple(np.take(volume, volume.shape[axis] // 2, axis=axis).T[::-1]
                 for axis in (PLANE_AXIS[p] for p in PLANES))


def display_scale(volume_shape, min_px=MIN_PANEL_PX) -> int:
    """Integer enlargement that makes the smallest middle slice of a volume at least `min_px` tall."""
    return max(1, -(-min_px // min(volume_shape[1], volume_shape[2])))


def enlarge(image, factor):
    """Nearest-neighbour enlargement of a [H, W] image by an integer factor."""
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def volume_tile(volume, scale=1):
    """The three middle slices of one [X, Y, Z] volume side by side, top-aligned, NaN between them."""
    slices = [enlarge(s, scale) for s in middle_slices(volume)]
    height = max(s.shape[0] for s in slices)
    width = sum(s.shape[1] for s in slices) + GAP * (len(slices) - 1)
    tile = np.full((height, width), np.nan, np.float32)
    col = 0
    for s in slices:
        tile[:s.shape[0], col:col + s.shape[1]] = s
        col += s.shape[1] + GAP
    return tile


def tile_grid(tiles, columns, drange=(-1.0, 1.0)):
    """Equal-sized [H, W] tiles -> uint8 image, `columns` tiles per row, black gaps and padding."""
    th, tw = tiles[0].shape
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * (th + GAP) - GAP, columns * (tw + GAP) - GAP), np.nan, np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * (th + GAP):r * (th + GAP) + th, c * (tw + GAP):c * (tw + GAP) + tw] = tile
    lo, hi = drange
    scaled = np.rint((np.nan_to_num(grid, nan=lo) - lo) * (255.0 / (hi - lo)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def preview_grid(volumes, columns, drange=(-1.0, 1.0), scale=None):
    """[N, X, Y, Z, C] volumes (first channel) -> uint8 grid of their middle slices; small volumes enlarged."""
    volumes = np.asarray(volumes, np.float32)[..., 0]
    scale = display_scale(volumes.shape[1:]) if scale is None else scale
    return tile_grid([volume_tile(v, scale) for v in volumes], columns, drange)


def plane_grid(cells, plane, drange=(-1.0, 1.0), scale=None):
    """uint8 grid of one middle plane: `cells` rows of [X, Y, Z, C] volumes (None = black)."""
    index = PLANES.index(plane)
    shape = next(v for row in cells for v in row if v is not None).shape[:3]
    scale = display_scale(shape) if scale is None else scale
    blank = enlarge(middle_slices(np.zeros(shape, np.float32))[index], scale) * np.nan
    tiles = [blank if v is None else enlarge(middle_slices(v[..., 0])[index], scale) for row in cells for v in row]
    return tile_grid(tiles, len(cells[0]), drange)


PNG_COLOR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: grayscale, RGB


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image) -> bytes:
    """[H, W] (grayscale) or [H, W, 3] uint8 array -> PNG bytes (8 bits per sample, zlib's default level)."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    height, width, channels = image.shape
    if channels not in PNG_COLOR_TYPES:
        raise ValueError(f"a PNG image needs 1 or 3 channels, got shape {image.shape}")
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * channels)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOR_TYPES[channels], 0, 0, 0)  # no interlace
    return b"".join((b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", zlib.compress(rows.tobytes())), _png_chunk(b"IEND", b"")))  # rows: filter 0


def write_png(path, image):
    """Write a uint8 image as PNG atomically."""
    return write_bytes_atomic(path, encode_png(image))
