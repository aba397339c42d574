"""Helpers shared by several test modules."""

import contextlib
import subprocess

import pytest

__all__ = ["mounted_tmpfs"]


@contextlib.contextmanager
def mounted_tmpfs(mount, size):
    """A tmpfs of ``size`` (e.g. ``"256k"``) mounted on the new folder ``mount`` for the
    block; the test skips where mounting is not permitted (root only)."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
