"""Command line: ``gluon-triplet [SUBCOMMAND] [options]``, ``python -m gluon_triplet`` and
``python run_train.py [options]``.

Each subcommand is a module of this package named in :data:`SUBCOMMANDS`, with a one-line
``HELP`` and ``main(argv) -> exit status``; a new subcommand is a new module and one line
here. The modules import MXNet only when they run, so ``--help`` stays instant. Without a
subcommand, the options are ``train``'s.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import List, Optional, Sequence

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

#: ``gluon-triplet <name> ...`` runs ``gluon_triplet.cli.<module>.main``.
SUBCOMMANDS = {
    "train": "train",
    "embed": "embed",
    "evaluate": "evaluate",
    "view": "view",
    "launch": "launch",
    "index": "index",
    "search": "search",
    "export": "export",
    "pack": "pack",
}


def subcommand(name: str) -> ModuleType:
    """The module of subcommand ``name``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    if name not in SUBCOMMANDS:
        raise ValueError(
            f"unknown subcommand {name!r}; choose one of: {', '.join(sorted(SUBCOMMANDS))} "
            "(or train options alone)"
        )
    return importlib.import_module(f"{__name__}.{SUBCOMMANDS[name]}")


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
