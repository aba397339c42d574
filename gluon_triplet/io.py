"""Atomic file writes: readers see the old content or the new, never a torn file."""

from __future__ import annotations

import os
import tempfile
from typing import Callable

__all__ = ["atomic_save", "atomic_write_text"]


def atomic_save(path: str, save: Callable[[str], object]) -> None:
    """Call ``save(tmp)`` on a temporary name beside ``path``, then rename it to ``path``.

    Readers (and a later ``--resume``) see the old file or the new one, never a torn one;
    on an error the temporary file is removed and ``path`` is left as it was. The
    temporary name ends like ``path`` (``.tmp-<name>``), so savers that append a missing
    suffix (``np.save``) write exactly that name.
    """
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{base}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
