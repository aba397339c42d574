"""Atomic writers: a crash at any point leaves the old file, never a torn one."""

import json
import os

import numpy as np
import pytest

from gluon_triplet.io import atomic_save, atomic_write_text


def test_atomic_write_text_crash_keeps_old_file(tmp_path, monkeypatch):
    """metrics.json and config.json go through atomic_write_text: a crash at the rename
    (after the new content was written to the temporary file) leaves the old file."""
    path = tmp_path / "metrics.json"
    atomic_write_text(str(path), '{"epoch": 1}\n')

    def crash(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_text(str(path), '{"epoch": 2, "much": "' + "x" * 10000 + '"}\n')
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_atomic_save_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.npy"
    atomic_save(str(path), lambda tmp: np.save(tmp, np.arange(3)))
    np.testing.assert_array_equal(np.load(path), np.arange(3))

    def torn(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_save(str(path), torn)
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert os.listdir(tmp_path) == ["a.npy"]
