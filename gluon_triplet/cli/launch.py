"""``gluon-triplet launch -n WORKERS -- [train options]``: a distributed job on this host.

The job itself (ps-lite scheduler, servers, workers, their supervision) is
:mod:`gluon_triplet.training.launch`, which this subcommand runs.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

__all__ = ["HELP", "build_parser", "main"]

HELP = "distributed training on this host (ps-lite scheduler, servers, workers)"


def build_parser() -> Any:
    """The parser of ``gluon-triplet launch`` (its own options, before ``--``)."""
    return importlib.import_module("gluon_triplet.training.launch").build_parser()


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet launch ...``; returns the exit status."""
    return importlib.import_module("gluon_triplet.training.launch").main(list(argv))
