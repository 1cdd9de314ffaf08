"""Generate volumes with a trained generator (see `python generate.py --help`); the same as `tf3dstylegan-generate`."""
import sys

from tf3dstylegan import cli

if __name__ == "__main__":
    sys.exit(cli.run("tf3dstylegan.commands.generate"))
