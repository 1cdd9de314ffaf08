"""Generate volumes, style-mixing grids and interpolations with a trained generator (spec §7.1).

  python generate.py --network PATH --seeds 0-9 [--trunc 0.7] [--trunc-cutoff N] [--noise-mode const] [--slab-size 16] \
      --outdir out/
  python generate.py --network PATH --row-seeds 1,2 --col-seeds 3-5 --col-styles 5-9 --outdir out/
  python generate.py --network PATH --interp 0,1 [--frames 10] [--space w|z] --outdir out/

PATH: a legacy .pkl, a .keras file or a training run folder (G_ema is used). The three modes can be combined.
"""
import os
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("network", None, "Network: legacy .pkl, .keras file or run folder.")
flags.DEFINE_string("outdir", None, "Output folder.")
flags.DEFINE_string("seeds", None, "Seeds to generate, e.g. 0-9 or 1,5,7.")
flags.DEFINE_float("trunc", 1.0, "Truncation psi (1 = none).")
flags.DEFINE_integer("trunc_cutoff", None, "Truncate only style layers below this index (default: all).")
flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"],
                  "Noise maps: the stored ones, drawn from each seed, or none.")
flags.DEFINE_string("row_seeds", None, "Style mixing: seeds of the rows (the base styles).")
flags.DEFINE_string("col_seeds", None, "Style mixing: seeds of the columns.")
flags.DEFINE_string("col_styles", "0-6", "Style mixing: style layers taken from the column seed, e.g. 5-9.")
flags.DEFINE_list("interp", None, "Interpolation: two seeds A,B.")
flags.DEFINE_integer("frames", 10, "Interpolation: number of frames, endpoints included.")
flags.DEFINE_enum("space", "w", ["w", "z"], "Interpolation: linear in W or spherical in Z.")
flags.DEFINE_integer("batch_size", 4, "Volumes per forward pass.", lower_bound=1)
flags.DEFINE_integer("slab_size", 0, "Compute the full-resolution level in slabs of this many voxels along the "
                     "first axis: less memory (1 mm volumes, small machines), same volumes, slower. 0: whole.",
                     lower_bound=0)
FLAGS = flags.FLAGS


def int_list(name, text):
    from tf3dstylegan.generate import parse_int_list
    try:
        return parse_int_list(text)
    except ValueError as err:
        sys.exit(f"--{name.replace('_', '-')}: {err}")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.network or not FLAGS.outdir:
        sys.exit("--network and --outdir are required")
    if not (FLAGS.seeds or FLAGS.interp or FLAGS.row_seeds or FLAGS.col_seeds):
        sys.exit("nothing to do: give --seeds, --row-seeds/--col-seeds or --interp")
    if bool(FLAGS.row_seeds) != bool(FLAGS.col_seeds):
        sys.exit("style mixing needs both --row-seeds and --col-seeds")
    if FLAGS.interp and len(FLAGS.interp) != 2:
        sys.exit(f"--interp: expected two seeds A,B, got {','.join(FLAGS.interp)}")
    import tf3dstylegan
    from tf3dstylegan import generate as gen

    try:
        G = tf3dstylegan.load_network(FLAGS.network).G_ema
    except (OSError, ValueError) as err:
        sys.exit(str(err) if str(FLAGS.network) in str(err) else f"{FLAGS.network}: {err}")
    opts = dict(psi=FLAGS.trunc, noise_mode=FLAGS.noise_mode, cutoff=FLAGS.trunc_cutoff,
                batch_size=FLAGS.batch_size, slab_size=FLAGS.slab_size)
    voxel_size = G.config.voxel_size
    if FLAGS.seeds:
        seeds = int_list("seeds", FLAGS.seeds)
        written = gen.write_generated_batches(FLAGS.outdir, gen.generated_batches(G, seeds, **opts), voxel_size,
                                              gen.montage_columns(len(seeds)))
        print(f"{written} volumes -> {FLAGS.outdir}")
    if FLAGS.row_seeds:
        rows, cols = int_list("row_seeds", FLAGS.row_seeds), int_list("col_seeds", FLAGS.col_seeds)
        try:
            mix = gen.style_mix(G, rows, cols, int_list("col_styles", FLAGS.col_styles), **opts)
        except ValueError as err:
            sys.exit(f"--col-styles: {err}")
        gen.write_style_mix(FLAGS.outdir, rows, cols, *mix, voxel_size)
        print(f"{len(rows)}x{len(cols)} style mixes -> {FLAGS.outdir}")
    if FLAGS.interp:
        seed_a, seed_b = (int_list("interp", s)[0] for s in FLAGS.interp)
        try:
            frames = gen.interpolate(G, seed_a, seed_b, FLAGS.frames, FLAGS.space, **opts)
        except ValueError as err:
            sys.exit(f"--frames: {err}")
        gen.write_interpolation(FLAGS.outdir, seed_a, seed_b, frames, voxel_size, FLAGS.space)
        print(f"{len(frames)} interpolation frames ({FLAGS.space}) -> {FLAGS.outdir}")


if __name__ == "__main__":
    from tf3dstylegan.generate import underscore_flag_names
    app.run(main, argv=underscore_flag_names(sys.argv))
