"""`python -m tf3dstylegan COMMAND ...`: convert (legacy pickle to .keras), metrics."""
import importlib
import sys

COMMANDS = {
    "convert": ("tf3dstylegan.convert", "convert a legacy TF1 snapshot .pkl to G.keras, D.keras, G_ema.keras"),
    "metrics": ("tf3dstylegan.metrics.cli", "FID (3 planes), bMMD2, MS-SSIM and 3D FID of a generator"),
    "metrics-weights": ("tf3dstylegan.metrics.weights", "download and convert the metric networks' weights"),
}


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        lines = [f"  {name:10s}{help_text}" for name, (_, help_text) in COMMANDS.items()]
        sys.exit("usage: python -m tf3dstylegan COMMAND [args]\ncommands:\n" + "\n".join(lines))
    module = importlib.import_module(COMMANDS[argv[1]][0])
    return module.main([f"{argv[0]} {argv[1]}"] + argv[2:])


if __name__ == "__main__":
    main()
