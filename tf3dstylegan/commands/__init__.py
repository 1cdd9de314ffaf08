"""Command-line commands, each a thin layer over the Python API (run through `tf3dstylegan.cli`)."""
