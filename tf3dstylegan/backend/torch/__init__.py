"""Code for the PyTorch backend only (see tf3dstylegan.backend)."""
