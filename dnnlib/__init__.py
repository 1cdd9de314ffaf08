"""Stand-ins for the classes that legacy 3D-StyleGAN pickles name; nothing here runs pickled code."""
from dnnlib.util import EasyDict

__all__ = ["EasyDict"]
