"""`python -m tf3dstylegan.metrics ...` = `python -m tf3dstylegan metrics ...`."""
import sys

from tf3dstylegan.metrics import cli

if __name__ == "__main__":
    cli.main(sys.argv)
