"""resources: memory and disk figures, and failed writes as one line."""

import errno
import os
import re

import mxnet as mx
import pytest

from gluon_triplet.resources import (
    DiskFullError,
    available_memory,
    default_max_data_bytes,
    disk_full_error,
    error_line,
    format_bytes,
    free_space,
    mxnet_reason,
    write_failure,
)


def test_format_bytes():
    assert format_bytes(0) == "0 bytes"
    assert format_bytes(1023) == "1023 bytes"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"
    assert format_bytes(2**70) == "1024.0 EiB"


def test_memory_and_disk_figures_are_positive():
    available = available_memory()
    assert available is None or available > 0
    limit = default_max_data_bytes()
    assert limit is None or limit == available_memory() // 2 or limit > 0
    assert free_space(os.path.join(os.getcwd(), "no", "such", "file")) > 0


def test_mxnet_reason_is_the_meaning_of_a_real_mxnet_error(tmp_path):
    bad = tmp_path / "bad.params"
    bad.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(mx.base.MXNetError) as info:
        mx.nd.load(str(bad))
    assert str(info.value).startswith("Traceback")  # why the first line will not do
    assert mxnet_reason(info.value) == "Invalid NDArray file format"
    assert error_line(info.value) == "Invalid NDArray file format"
    assert error_line(AssertionError("first\nsecond")) == "first"
    assert error_line(KeyError()) == "KeyError"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_failed_mxnet_write_is_a_disk_full_error(tmp_path):
    target = tmp_path / "big.params"
    os.symlink("/dev/full", tmp_path / "link")
    with pytest.raises(mx.base.MXNetError) as info:
        mx.nd.save(str(tmp_path / "link"), {"a": mx.nd.ones((100000,))})  # beyond the buffer
    err = write_failure(str(target), info.value)
    assert isinstance(err, DiskFullError) and err.errno == errno.ENOSPC
    assert str(err).startswith(
        f"cannot write {target}: MXNet could not write it (FileStream.Write incomplete) ("
    )


def test_write_failure_maps_only_a_full_disk(tmp_path):
    path = str(tmp_path / "f")
    for code in (errno.ENOSPC, errno.EDQUOT):
        err = write_failure(path, OSError(code, os.strerror(code)))
        assert isinstance(err, DiskFullError) and isinstance(err, OSError)
        assert str(err).startswith(f"cannot write {path}: {os.strerror(code)} (")
        assert str(err).endswith(f" free in {tmp_path})")
    assert write_failure(path, OSError(errno.EACCES, "Permission denied")) is None
    assert write_failure(path, ValueError("no")) is None
    assert write_failure(path, disk_full_error(path)) is None  # reported already
    assert str(disk_full_error(str(tmp_path))).startswith(f"cannot write into {tmp_path}: ")


def test_write_error_names_the_path_and_free_space_of_read_only_and_short_writes(tmp_path):
    from gluon_triplet.resources import write_error

    path = str(tmp_path / "f.rec")
    ro = write_error(path, OSError(errno.EROFS, "Read-only file system"))
    assert ro.errno == errno.EROFS
    assert re.fullmatch(
        rf"cannot write {re.escape(path)}: Read-only file system \([0-9.]+ \w+ free in "
        rf"{re.escape(str(tmp_path))}\)",
        str(ro),
    )
    mx_text = 'LocalFileSystem: Check failed: allow_null: :Open "x": Read-only file system'
    assert "Read-only file system (" in str(
        write_error(path, type("MXNetError", (Exception,), {})(mx_text))
    )
    short = write_error(path, OSError("2048045 requested and 0 written"))
    assert isinstance(short, DiskFullError)
    assert str(short).startswith(
        f"cannot write {path}: short write (2048045 requested and 0 written)"
    )
    assert write_error(path, OSError("2048045 requested")) is None
    assert write_error(path, ValueError("no")) is None
    assert write_error(path, disk_full_error(path)) is None  # reported already
