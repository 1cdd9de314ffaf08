"""Train 3D-StyleGAN (see `python train.py --help`); the same as `tf3dstylegan-train`."""
import sys

from tf3dstylegan import cli

if __name__ == "__main__":
    sys.exit(cli.run("tf3dstylegan.commands.train"))
