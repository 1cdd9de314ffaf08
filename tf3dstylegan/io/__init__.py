"""Outputs of the package: atomic files, the cache folder, middle slices, preview grids and PNGs, progress bars."""
from tf3dstylegan.io.files import (atomic_path, cache_dir, write_bytes_atomic, write_json_atomic,
                                   write_text_atomic)
from tf3dstylegan.io.images import (GAP, PLANE_AXIS, PLANES, display_scale, enlarge, encode_png, middle_slices,
                                    plane_grid, preview_grid, tile_grid, to_unit_range, volume_tile, write_png)
from tf3dstylegan.io.progress import on_terminal, progress_bar

__all__ = ["GAP", "PLANES", "PLANE_AXIS", "atomic_path", "cache_dir", "display_scale", "encode_png", "enlarge",
           "middle_slices", "on_terminal", "plane_grid", "progress_bar", "preview_grid", "tile_grid",
           "to_unit_range", "volume_tile", "write_bytes_atomic", "write_json_atomic", "write_png", "write_text_atomic"]
