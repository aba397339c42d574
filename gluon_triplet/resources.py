"""What the machine gives a run (available memory, free disk space, sizes in words), and
failed writes and MXNet errors as one-line messages."""

from __future__ import annotations

import errno
import os
import re
import shutil
from typing import NoReturn, Optional

from .errors import DiskFullError

__all__ = [
    "DISK_FULL_ERRNOS",
    "UNWRITABLE_ERRNOS",
    "DiskFullError",
    "available_memory",
    "default_max_data_bytes",
    "disk_full_error",
    "error_line",
    "format_bytes",
    "free_space",
    "mxnet_reason",
    "raise_write_error",
    "short_reason",
    "write_error",
    "write_failure",
]

#: ``errno`` values of a write that failed for want of space: a full file system, or the
#: user's quota.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

#: ``errno`` values of a write refused by the place: a read-only mount, no permission.
UNWRITABLE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)

# What MXNet's file streams say (they report no errno) for those.
_MXNET_UNWRITABLE = ("Read-only file system", "Permission denied")


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations without swapping, or None if unknown.

    Linux's ``MemAvailable`` (``/proc/meminfo``); elsewhere the free physical pages
    (``os.sysconf``).
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def default_max_data_bytes() -> Optional[int]:
    """The default of ``--max-data-bytes``: half the available memory (None if unknown).

    Half, because a dataset is held twice while it is converted (the file's dtype and
    float32), and training needs memory of its own.
    """
    available = available_memory()
    return None if available is None else available // 2


def format_bytes(n: float) -> str:
    """``1536 -> "1.5 KiB"``; exact bytes below 1 KiB."""
    n = float(n)
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        n /= 1024
        if n < 1024 or unit == "EiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def free_space(path: str) -> Optional[int]:
    """Free bytes (for an unprivileged user) on the file system holding ``path``, or None."""
    directory = os.path.abspath(path)
    while directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def disk_full_error(path: str, reason: Optional[str] = None) -> DiskFullError:
    """The :class:`DiskFullError` for a failed write of ``path``.

    Parameters
    ----------
    path : str
        The file that could not be written.
    reason : str, optional
        What the writer said (default: "no space left on device").
    """
    err = DiskFullError(_cannot_write(path, reason or "no space left on device"))
    err.errno = errno.ENOSPC  # set after construction, so str(err) stays the message
    return err


def _cannot_write(path: str, reason: str) -> str:
    free = free_space(path)
    # A directory when the writer did not say which file (e.g. mxboard's).
    into = os.path.isdir(path)
    where = path if into else (os.path.dirname(path) or os.curdir)
    left = "unknown space" if free is None else format_bytes(free)
    return f"cannot write {'into ' if into else ''}{path}: {reason} ({left} free in {where})"


def write_failure(path: str, error: BaseException) -> Optional[DiskFullError]:
    """The :class:`DiskFullError` that ``error``, raised while writing ``path``, stands for,
    or None when it is another kind of error.

    Counted as disk full: an ``OSError`` with errno ENOSPC or EDQUOT, and an ``MXNetError``
    of a failed write (MXNet's file streams report no errno).
    """
    if isinstance(error, DiskFullError):
        return None  # already reported for its own file
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return disk_full_error(path, error.strerror)
    if type(error).__name__ == "MXNetError" and "Write incomplete" in str(error):
        return disk_full_error(path, f"MXNet could not write it ({mxnet_reason(error)})")
    if isinstance(error, OSError) and error.errno is None and _SHORT_WRITE.match(str(error)):
        # numpy's tofile (np.save, faiss' serialized index): a short fwrite, no errno
        return disk_full_error(path, f"short write ({error})")
    return None


_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def write_error(path: str, error: BaseException) -> Optional[OSError]:
    """The one-line ``OSError`` that ``error``, raised while writing ``path``, stands for,
    or None when it is another kind of error (or was reported already).

    :func:`write_failure`'s full disk (a :class:`DiskFullError`), and a place that
    refuses writes: a read-only file system or a missing permission (errno EROFS,
    EACCES, EPERM, or MXNet's file stream saying so). Both name ``path`` and the free
    space, e.g. ``cannot write out/p.rec: Read-only file system (1.2 GiB free in out)``.
    """
    full = write_failure(path, error)
    if full is not None or isinstance(error, DiskFullError):
        return full
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    if code in UNWRITABLE_ERRNOS:
        reason = getattr(error, "strerror", None) or os.strerror(code)
    elif type(error).__name__ == "MXNetError" and any(m in str(error) for m in _MXNET_UNWRITABLE):
        reason = next(m for m in _MXNET_UNWRITABLE if m in str(error))
        code = errno.EROFS if reason.startswith("Read-only") else errno.EACCES
    else:
        return None
    err = OSError(_cannot_write(path, reason))
    err.errno = code
    return err


def raise_write_error(path: str, error: BaseException, unwritable: bool = True) -> NoReturn:
    """Raise :func:`write_error`'s line for ``error`` (``unwritable`` False:
    :func:`write_failure`'s, a full disk only), or ``error`` itself when it is another kind."""
    failure = (write_error if unwritable else write_failure)(path, error)
    if failure is None:
        raise error
    raise failure from None


def mxnet_reason(error: BaseException) -> str:
    """The one line that says what went wrong in an ``MXNetError`` (whose text starts with
    a C++ "Traceback" and a file name), e.g. ``"Invalid NDArray file format"``."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("MXNetError:"):
            text = line[len("MXNetError:") :].strip()
            # "Check failed: <C++ condition>: <what it means>": the meaning.
            return text.rsplit(": ", 1)[-1] if text.startswith("Check failed") else text
    useful = [line for line in lines if not line.startswith(("Traceback", "File ", "[bt]"))]
    return (useful or lines or [type(error).__name__])[-1]


def error_line(error: BaseException) -> str:
    """One line saying what ``error`` is: :func:`mxnet_reason` for an ``MXNetError``, the
    first line of the message otherwise (the exception's type when it has none)."""
    if type(error).__name__ == "MXNetError":
        return mxnet_reason(error)
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def short_reason(e: Exception) -> str:
    """An exception as one short line, its type and gist, for a message (a failed download
    or read): at most 100 characters of text; requests' long chains become their cause."""
    text = " ".join(str(e).split())
    # requests nests the real cause deep inside a long message; keep just its gist
    cause = re.search(r"Caused by (\w+)", text)
    if cause:
        code = re.search(r"\[Errno -?\d+\] ([^)\"']+)", text)
        text = cause.group(1) + (f": {code.group(1).strip()}" if code else "")
    if len(text) > 100:
        text = text[:97] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
