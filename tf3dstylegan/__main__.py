"""`python -m tf3dstylegan COMMAND [flags]`: train, generate, project, dataset, convert, metrics, metrics-weights."""
import sys

from tf3dstylegan.cli import main

if __name__ == "__main__":
    sys.exit(main())
