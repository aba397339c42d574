"""Exclusive locks on a path: ``fcntl.flock`` on a lock file that names its holder.

Used by a run directory (``RUN/.lock``, kept) and by ``pack`` (``PREFIX.lock``, removed
when the pack ends). The lock file holds ``PID HOST`` for the error of the next process.
The lock goes with its open file: on exit from the block, or with the process however it
ends (kill -9 included), so a stale lock cannot remain.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from typing import Callable, Iterator

from .errors import LockedError

__all__ = ["LockedError", "exclusive_lock", "lock_holder", "probe_lock"]

InUse = Callable[[str], BaseException]


def _locked(holder: str) -> BaseException:
    return LockedError(f"in use by {holder}")


def lock_holder(path: str) -> str:
    """``process PID on HOST`` from the lock file ``path`` (``process PID`` when it names
    no host; ``another process`` when it names nobody)."""
    try:
        with open(path, encoding="utf-8") as f:
            words = f.read().split()
    except (OSError, ValueError):
        words = []
    if not words or not words[0].isdigit():
        return "another process"
    return f"process {words[0]}" + (f" on {words[1]}" if len(words) > 1 else "")


def probe_lock(path: str, in_use: InUse = _locked) -> None:
    """Raise ``in_use(holder)`` if another open file holds the lock ``path``; writes
    nothing (a missing lock file is free)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # never locked
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise in_use(lock_holder(path)) from None
    finally:
        os.close(fd)  # also releases the probe's shared lock


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)


@contextlib.contextmanager
def exclusive_lock(path: str, in_use: InUse = _locked, remove: bool = False) -> Iterator[None]:
    """Hold ``path`` locked exclusively (``fcntl.flock``, never waiting) inside the block.

    Parameters
    ----------
    path : str
        The lock file; created if missing.
    in_use : callable
        Builds the exception raised when another open file holds the lock, from the
        holder's description (:func:`lock_holder`).
    remove : bool
        Remove the lock file when the block ends (still holding the lock). A process that
        then locks the removed file sees that the path names another file, and retries.

    Raises
    ------
    OSError
        ``in_use(holder)``; or the lock file cannot be created (e.g. a read-only place).
    """
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise in_use(lock_holder(path)) from None
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it as we opened it: lock the new one
    else:
        raise in_use(lock_holder(path))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)
