"""Project a scan into a generator's latent space (`python project.py --help`); the same as `tf3dstylegan-project`."""
import sys

from tf3dstylegan import cli

if __name__ == "__main__":
    sys.exit(cli.run("tf3dstylegan.commands.project"))
