"""Code for the JAX backend only (see tf3dstylegan.backend)."""
