"""``python -m gluon_triplet [SUBCOMMAND] [options]``: the same as ``gluon-triplet``."""

import sys

from .cli import main

__all__: list = []

if __name__ == "__main__":
    sys.exit(main())
