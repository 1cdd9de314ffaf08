"""Code for the TensorFlow backend only (see tf3dstylegan.backend)."""
