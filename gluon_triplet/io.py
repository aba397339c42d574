"""Atomic file writes: readers see the old content or the new, never a torn file.

A write that fails for want of space (ENOSPC, EDQUOT, or MXNet's failed file stream)
raises :class:`~gluon_triplet.resources.DiskFullError`, one line naming the file and the
space left, and leaves no temporary file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Callable, Optional

from .resources import raise_write_error

__all__ = ["atomic_save", "atomic_write_text", "new_directory_parent", "sha256_file"]


def atomic_save(
    path: str, save: Callable[[str], object], check: Optional[Callable[[str], object]] = None
) -> None:
    """Call ``save(tmp)`` on a temporary name beside ``path``, then rename it to ``path``.

    Readers (and a later ``--resume``) see the old file or the new one, never a torn one;
    on an error the temporary file is removed and ``path`` is left as it was. The
    temporary name ends like ``path`` (``.tmp-<name>``), so savers that append a missing
    suffix (``np.save``) write exactly that name. ``check(tmp)``, if given, runs on the
    written file before the rename and raises if it is incomplete (for writers that lose
    the end of a file on a full disk without an error, as MXNet's file stream does).
    """
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{base}")
    try:
        save(tmp)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except Exception as e:
        raise_write_error(path, e, unwritable=False)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a torn one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        # mkstemp makes the file private (0600); the run's files are as readable as the
        # parameter files beside them.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise_write_error(path, e, unwritable=False)


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file's bytes (read 1 MiB at a time): the checksums of checkpoints,
    index directories and exports."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_directory_parent(path: str) -> str:
    """The existing parent of ``path``, a directory about to be written as a whole.

    Raises
    ------
    FileExistsError
        ``path`` exists and is not an empty directory.
    FileNotFoundError
        Its parent directory does not exist.
    """
    if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
        raise FileExistsError(f"{path} already exists; choose a new directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent!r} does not exist")
    return parent
