"""Preview images: the middle sagittal, coronal and axial slices of generated volumes, as a grayscale PNG."""
import os
import struct
import zlib
from pathlib import Path

import numpy as np

GAP = 2  # pixels between slices and between tiles


def middle_slices(volume):
    """[X, Y, Z] -> (sagittal [Z, Y], coronal [Z, X], axial [Y, X]) with the last voxel axis pointing up."""
    x, y, z = (s // 2 for s in volume.shape)
    sagittal = volume[x, :, :].T[::-1]
    coronal = volume[:, y, :].T[::-1]
    axial = volume[:, :, z].T[::-1]
    return sagittal, coronal, axial


def volume_tile(volume):
    """The three middle slices of one [X, Y, Z] volume side by side, top-aligned: [max(Y, Z), Y + 2X + gaps]."""
    slices = middle_slices(volume)
    height = max(s.shape[0] for s in slices)
    width = sum(s.shape[1] for s in slices) + GAP * (len(slices) - 1)
    tile = np.full((height, width), np.nan, np.float32)
    col = 0
    for s in slices:
        tile[:s.shape[0], col:col + s.shape[1]] = s
        col += s.shape[1] + GAP
    return tile


def preview_grid(volumes, columns, drange=(-1.0, 1.0)):
    """[N, X, Y, Z, C] volumes (first channel shown) -> uint8 image, `columns` tiles per row, black gaps."""
    return tile_grid([volume_tile(v) for v in np.asarray(volumes, np.float32)[..., 0]], columns, drange)


def tile_grid(tiles, columns, drange=(-1.0, 1.0)):
    """volume_tile images -> uint8 image, `columns` tiles per row, black gaps."""
    th, tw = tiles[0].shape
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * (th + GAP) - GAP, columns * (tw + GAP) - GAP), np.nan, np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * (th + GAP):r * (th + GAP) + th, c * (tw + GAP):c * (tw + GAP) + tw] = tile
    lo, hi = drange
    scaled = np.rint((np.nan_to_num(grid, nan=lo) - lo) * (255.0 / (hi - lo)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def png_bytes(image):
    """An 8-bit grayscale [H, W] uint8 array encoded as PNG."""
    image = np.ascontiguousarray(image, np.uint8)
    height, width = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_png(path, image):
    """Write a grayscale PNG atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(png_bytes(image))
    os.replace(tmp, path)


def read_png(path):
    """Decode a PNG written by `write_png` (8-bit grayscale, no interlace) back to [H, W] uint8."""
    data = Path(path).read_bytes()
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width + 1)
    return rows[:, 1:].copy()
