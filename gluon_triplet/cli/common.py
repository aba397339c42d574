"""What every subcommand shares: logging to stderr, the error guard (the one place that
maps exceptions to an ``error:`` line and an exit status), common flags and checks."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
from typing import Any, Callable, Optional, Sequence

from ..errors import ConfigError, MissingDependency

__all__ = [
    "BAD_INPUT",
    "add_common_flags",
    "add_run_flags",
    "add_split_flag",
    "address_family",
    "bind_error",
    "check_new_path",
    "guarded",
    "is_loopback",
    "port_in_use",
    "run_command",
    "setup_logging",
]

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


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """``RUN_DIR``, ``--params`` and ``--data-dir``."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by training")
    p.add_argument(
        "--params",
        default="best",
        help="best, last, or a .params file in/under RUN_DIR (default: best)",
    )
    p.add_argument(
        "--data-dir", help="IDX files for mnist / fashion-mnist (default: as for training)"
    )


def add_split_flag(p: Any, flag: str = "--split", default: str = "test", of: str = "") -> None:
    """``--split {test,train,all}``: which part of a dataset (``of`` names it)."""
    p.add_argument(
        flag,
        choices=("test", "train", "all"),
        default=default,
        help=f"part of {of or 'the dataset'} (default: {default})",
    )


def run_command(
    parser: argparse.ArgumentParser, fn: Callable[[argparse.Namespace], Any], argv: Sequence[str]
) -> int:
    """Parse ``argv``, set up logging (``-q``) and run ``fn(args)`` under :func:`guarded`."""
    args = parser.parse_args(list(argv))
    setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    return guarded(fn, args, debug=getattr(args, "debug", False))


def check_new_path(path: str, flag: str) -> None:
    """Refuse an output ``path`` that exists or whose directory does not."""
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists; choose another {flag}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent!r} for {flag} does not exist")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only serves this machine."""
    if host in ("", "0.0.0.0", "::"):
        return False  # every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass  # a name
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def address_family(host: str) -> socket.AddressFamily:
    """The socket family of ``host`` (IPv4 when it does not resolve)."""
    try:
        return socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM)[0][0]
    except OSError:
        return socket.AF_INET


def bind_error(host: str, port: int) -> Optional[str]:
    """Why a server could not listen on ``host:port`` (the OS's reason), or None."""
    with socket.socket(address_family(host), socket.SOCK_STREAM) as s:
        # As a server would: a port in TIME_WAIT is free, one with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def port_in_use(host: str, port: int) -> bool:
    """Whether a server already listens on ``host:port`` (binding it fails)."""
    return bind_error(host, port) is not None
