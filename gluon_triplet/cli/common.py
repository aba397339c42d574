"""What every subcommand shares: logging to stderr, the error guard, common flags.

The error guard is the one place that maps exceptions to what the user sees: bad input
(:class:`~gluon_triplet.config.ConfigError`, ``ValueError`` and its subclasses such as
``DataError`` and ``CheckpointError``, ``OSError`` such as a missing file or a run
directory in use, ``FloatingPointError`` for divergence, a missing optional package) is
one ``error:`` line and exit status 2; an interrupt (SIGINT, SIGTERM) is one ``error:``
line and ``128 + signum``, as a shell reports a process killed by that signal. ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, Callable

from ..errors import ConfigError, MissingDependency

__all__ = ["BAD_INPUT", "add_common_flags", "guarded", "setup_logging"]

#: Exceptions that mean bad input: one ``error:`` line, exit status 2.
BAD_INPUT = (ConfigError, ValueError, OSError, FloatingPointError, MissingDependency)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return msg if record.levelno == logging.INFO else f"{record.levelname}: {msg}"


def setup_logging(quiet: bool = False, verbose: bool = False) -> logging.Logger:
    """Send the package's log to stderr: INFO lines bare, others ``LEVEL: message``."""
    log = logging.getLogger("gluon_triplet")
    log.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    return log


def guarded(fn: Callable[..., Any], *args: Any, debug: bool = False) -> int:
    """Call ``fn(*args)`` and return the exit status: 0, 2 for bad input, ``128 + signum``
    for an interrupt; errors are printed as one ``error:`` line (``debug``: re-raised)."""
    try:
        fn(*args)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"error: {e or 'interrupted'}", file=sys.stderr)
        return 128 + signum
    except BAD_INPUT as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def add_common_flags(p: argparse.ArgumentParser) -> None:
    """``-q`` and ``--debug``."""
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
