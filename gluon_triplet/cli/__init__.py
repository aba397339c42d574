"""Command line: ``gluon-triplet [SUBCOMMAND] [options]``, ``python -m gluon_triplet`` and
``python run_train.py [options]``.

Each subcommand is a module of this package named in :data:`SUBCOMMANDS`, with a one-line
``HELP`` and ``main(argv) -> exit status``; a new subcommand is a new module and one line
in :mod:`.commands`. The modules import MXNet only when they run, so ``--help`` stays
instant. Without a subcommand, the options are ``train``'s.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence

from .commands import SUBCOMMANDS, subcommand
from .common import setup_logging
from .train import build_parser, config_from_args, resume_config

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "config_from_args",
    "main",
    "resume_config",
    "setup_logging",
    "subcommand",
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``gluon-triplet``, ``python -m gluon_triplet`` and ``run_train.py``;
    returns the exit status."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        # Train options alone: `gluon-triplet [options]`.
        return subcommand("train").main(args, prog="gluon-triplet")
    try:
        module = subcommand(args[0])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return module.main(args[1:])
