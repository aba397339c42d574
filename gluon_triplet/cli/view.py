"""``gluon-triplet view [RUN_DIR|LOGDIR]``: TensorBoard on a run or a logs directory; the
URL is printed once the TensorBoard started here serves the requested logdir on it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import List, Optional, Sequence

from ..config import Config
from ..signals import Interrupted, interrupts
from .common import address_family, is_loopback, port_in_use, run_command

__all__ = ["HELP", "build_parser", "is_loopback", "main", "port_in_use"]

HELP = "serve a run or a logs directory with TensorBoard (projector included)"

logger = logging.getLogger("gluon_triplet")


def build_parser() -> argparse.ArgumentParser:
    default_logdir = Config().logdir
    p = argparse.ArgumentParser(
        prog="gluon-triplet view",
        description="Start TensorBoard on a run directory or a logs directory and print its URL; "
        "Ctrl-C stops it.",
    )
    p.add_argument(
        "logdir",
        nargs="?",
        default=default_logdir,
        metavar="RUN_DIR|LOGDIR",
        help=f"what TensorBoard reads (default: {default_logdir})",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on; anything but a loopback address serves every network "
        "that reaches this machine (default: 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=0, help="port (default: 0 = a free port)")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for TensorBoard to answer (default: 120)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def _free_port(host: str) -> int:
    with socket.socket(address_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tensorboard_command() -> List[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "tensorboard.main"]


def _serves(url: str, logdir: str) -> Optional[bool]:
    """None while nothing answers on ``url``; else whether the server there is a
    TensorBoard reading ``logdir``."""
    try:
        with urllib.request.urlopen(url + "data/environment", timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError:
        return False  # a server, but not a TensorBoard
    except OSError:
        return None
    try:
        location = json.loads(body).get("data_location")
    except (ValueError, AttributeError):
        return False
    return isinstance(location, str) and os.path.abspath(location) == os.path.abspath(logdir)


def _wait_until_served(proc: subprocess.Popen, url: str, args: argparse.Namespace) -> None:
    """Return once ``proc`` serves ``args.logdir`` on ``url``; OSError if it exits, another
    server answers there until the timeout, or nothing does."""
    deadline = time.monotonic() + args.timeout
    other = False
    while True:
        if proc.poll() is not None:
            raise OSError(
                f"tensorboard exited with status {proc.returncode} before serving on {url}"
                + (" (another server answers there)" if other else " (see above)")
            )
        serving = _serves(url, args.logdir)
        if serving:
            return
        other = other or serving is False
        if time.monotonic() > deadline:
            why = "another server answers there" if other else "nothing answered"
            raise OSError(f"tensorboard did not serve {url} within {args.timeout:g}s: {why}")
        time.sleep(0.3)


def _view(args: argparse.Namespace) -> None:
    if not os.path.isdir(args.logdir):
        raise FileNotFoundError(f"log directory {args.logdir!r} does not exist")
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if not is_loopback(args.host):
        logger.warning(
            "--host %s serves TensorBoard, and the logs it reads, to every network that "
            "reaches this machine; --host 127.0.0.1 keeps it local",
            args.host,
        )
    if args.port and port_in_use(args.host, args.port):
        raise OSError(
            f"port {args.port} on {args.host} is in use by another server; choose another "
            "--port, or --port 0 for a free one"
        )
    port = args.port or _free_port(args.host)
    cmd = _tensorboard_command() + [
        "--logdir",
        args.logdir,
        "--host",
        args.host,
        "--port",
        str(port),
        "--load_fast=false",
    ]
    poll_host = (
        "127.0.0.1" if args.host in ("0.0.0.0", "") else "::1" if args.host == "::" else args.host
    )
    netloc = f"[{poll_host}]" if ":" in poll_host else poll_host
    url = f"http://{netloc}:{port}/"
    try:
        _serve(cmd, url, args)
    except Interrupted as e:
        if e.signum != signal.SIGINT:
            raise  # kill, a hang-up: the error line and 128 + signum
        # Ctrl-C is how view is documented to stop: not an error.
        print("stopped TensorBoard (Ctrl-C)", flush=True)


def _serve(cmd: List[str], url: str, args: argparse.Namespace) -> None:
    # `kill` of this process stops TensorBoard too (interrupts -> finally), not orphaning it.
    with interrupts():
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            _wait_until_served(proc, url, args)
            print(f"TensorBoard: {url} | projector: {url}#projector | Ctrl-C stops it", flush=True)
            status = proc.wait()
            if status:
                raise OSError(f"tensorboard exited with status {status}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet view ...``; returns the exit status."""
    return run_command(build_parser(), _view, argv)
