"""``python -m gluon_triplet [SUBCOMMAND] [options]``: the same as ``gluon-triplet``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
