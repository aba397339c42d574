"""``gluon-triplet launch -n WORKERS -- [train options]``: a distributed job on this host.

The job itself (ps-lite scheduler, servers, workers, their supervision) is
:mod:`gluon_triplet.training.launch`, which this subcommand runs.
"""

from __future__ import annotations

import importlib
from typing import Sequence

__all__ = ["HELP", "main"]

HELP = "distributed training on this host (ps-lite scheduler, servers, workers)"


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet launch ...``; returns the exit status."""
    return importlib.import_module("gluon_triplet.training.launch").main(list(argv))
