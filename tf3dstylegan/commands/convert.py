"""Convert an original TF1 3D-StyleGAN snapshot to Keras: `{prog} SNAPSHOT.pkl OUTDIR`.

Writes G.keras, D.keras, G_ema.keras and conversion_report.json. The pickle is read by a restricted unpickler:
nothing from the file is executed.
"""
from tf3dstylegan.cli import CommandError


def define_flags(fv):
    """No flags: two positional arguments."""


def main(fv, args):
    if len(args) != 2:
        raise CommandError("expected two arguments: SNAPSHOT.pkl OUTDIR")
    from tf3dstylegan.convert import convert
    report = convert(args[0], args[1])
    cfg, params = report["config"], report["parameters"]
    print(f"converted {report['source']} -> {args[1]}")
    print(f"  image {tuple(report['img_shape'])}, G {cfg['g_architecture']}, D {cfg['d_architecture']}, "
          f"fmaps {cfg['fmap_min']}-{cfg['fmap_max']}, latent {cfg['latent_size']}, w {cfg['dlatent_size']}, "
          f"original dtype {report['source_dtype']}")
    print("  trainable parameters: " + ", ".join(f"{k} {v['trainable']:,}" for k, v in params.items()))
    stats = report["seed0_volume"]
    print(f"  seed 0 volume: min {stats['min']:.4f} max {stats['max']:.4f} mean {stats['mean']:.4f} "
          f"std {stats['std']:.4f}")
