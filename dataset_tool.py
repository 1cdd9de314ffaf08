"""Make and inspect 3D-StyleGAN datasets (see `python dataset_tool.py --help`); the same as `tf3dstylegan-dataset`.

Accepts the original's spellings too: `create_from_images3d`, `--base_size 5 6 7`, `--shuffle 0|1`.
"""
import sys

from tf3dstylegan import cli
from tf3dstylegan.commands.dataset import normalize_argv

if __name__ == "__main__":
    sys.exit(cli.run("tf3dstylegan.commands.dataset", normalize_argv(sys.argv)))
