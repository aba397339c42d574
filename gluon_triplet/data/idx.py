"""IDX files (the format of MNIST and Fashion-MNIST): read, with every size checked before
anything is allocated, and written.

IDX files are read here rather than by Gluon's dataset classes because Gluon checks the
SHA-1 of the *gzipped* file, which rejects Debian's re-compressed copies.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zlib
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from ..errors import DataError

__all__ = [
    "check_array_size",
    "idx_header",
    "open_idx",
    "read_idx",
    "read_idx_header",
    "write_idx",
]

_IDX_DTYPES: Dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {(dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data more than ~1032:1, so a gzip file this many times smaller than
# its header promises is truncated for sure, and we need not allocate the promised size.
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 20


def read_idx(path, max_bytes: Optional[int] = None) -> np.ndarray:
    """Read a plain or gzipped IDX file, validating header and length.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip is recognised by its magic bytes, not by the extension.
    max_bytes : int, optional
        Refuse, from the header and before reading the data, an array that would take
        more bytes than this as stored or as float32 (see :func:`check_array_size`).
        Default: no limit.

    Returns
    -------
    (d0, d1, ...) array
        Native-endian, with the dtype and shape the header declares (e.g. ``(N, 28, 28)
        uint8`` for images, ``(N,) uint8`` for labels).

    Raises
    ------
    DataError
        Missing or unreadable file, corrupt gzip, bad magic, unknown type code, an array
        above ``max_bytes``, or a payload shorter or longer than the header declares.
    """
    path = os.fspath(path)
    with open_idx(path) as (f, size, compressed):
        if compressed:
            limit = size * _MAX_DEFLATE_RATIO
            return _parse_idx(f, path, None, limit=limit, max_bytes=max_bytes)
        return _parse_idx(f, path, size, max_bytes=max_bytes)


@contextlib.contextmanager
def open_idx(path: str) -> Iterator[Tuple[Any, int, bool]]:
    """``(stream, file size, gzipped)`` of a plain or gzipped file (gzip is recognised by
    its magic bytes); a missing, unreadable or corrupt file is a DataError."""
    try:
        with open(path, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                yield raw, size, False
                return
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    yield f, size, True
            except (EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise DataError(f"{path}: corrupt gzip file ({e})") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an IDX file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def idx_header(f, path: str) -> Tuple[np.dtype, Tuple[int, ...]]:
    """The dtype (big-endian, as stored) and dimensions of the IDX stream ``f`` (read from
    its start up to the data).

    Raises
    ------
    DataError
        Bad magic, unknown type code, no dimensions or a truncated header.
    """
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(magic)} bytes long)")
    if magic[0] or magic[1]:
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{magic.hex()})")
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    return _IDX_DTYPES[code], struct.unpack(f">{ndim}I", raw_dims)


def read_idx_header(path) -> Tuple[np.dtype, Tuple[int, ...], bool]:
    """``(dtype, dims, gzipped)`` of an IDX file, from its header alone.

    Raises
    ------
    DataError
        As :func:`read_idx` for a missing file or a bad header.
    """
    path = os.fspath(path)
    with open_idx(path) as (f, _, compressed):
        return (*idx_header(f, path), compressed)


def _parse_idx(
    f, path: str, size: Optional[int], limit: int = 0, max_bytes: Optional[int] = None
) -> np.ndarray:
    """Parse an IDX stream; ``size`` is the file size for plain files, None for gzip."""
    dtype, dims = idx_header(f, path)
    expected = math.prod(dims) * dtype.itemsize  # a Python int: no overflow, no allocation
    if expected == 0 and math.prod(d for d in dims if d) * dtype.itemsize > np.iinfo(np.intp).max:
        # An empty array, but NumPy refuses the shape (found by fuzzing). Any non-empty
        # shape this large is reported below as a truncated file.
        raise DataError(f"{path}: IDX dimensions {list(dims)} are too large for an array")
    # Before any data is read or allocated: a small gzip file can promise gigabytes.
    check_array_size(path, "IDX data", dims, dtype, max_bytes)

    if size is not None:
        found = size - 4 - 4 * len(dims)
        if found == expected:
            buf = bytearray(expected)
            found = f.readinto(buf)
    elif expected > limit:
        found = _count_rest(f)
    else:
        buf = bytearray(expected)  # the only copy of the payload; the array views it
        view = memoryview(buf)
        got = 0
        while got < expected:
            n = f.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
        found = got + _count_rest(f)  # reading to EOF also makes gzip verify its CRC
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX file: expected {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} trailing bytes after the IDX data "
            f"(expected {expected} bytes of data, found {found})"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    if not dtype.isnative:
        arr.byteswap(inplace=True)  # in place, so the payload is never held twice
        arr = arr.view(dtype.newbyteorder("="))
    return arr


def _count_rest(f) -> int:
    return sum(len(chunk) for chunk in iter(lambda: f.read(_CHUNK), b""))


def check_array_size(where: str, what: str, shape, dtype, max_bytes: Optional[int]) -> None:
    """Refuse an array that would take more than ``max_bytes`` in memory, from its header.

    The size counted is the larger of the array as stored and as float32 (what training
    holds), so ``(N, 28, 28) uint8`` images count 4 bytes a pixel.

    Raises
    ------
    DataError
        One line naming ``where`` (the file), ``what`` (the array), its shape, dtype and
        size, and the limit.
    """
    if max_bytes is None:
        return
    count = math.prod(int(d) for d in shape)
    size = count * max(np.dtype(dtype).itemsize, 4)
    if size > max_bytes:
        from ..resources import format_bytes

        raise DataError(
            f"{where}: {what} of shape {tuple(int(d) for d in shape)} {np.dtype(dtype)} "
            f"needs {format_bytes(size)} in memory, above the limit of "
            f"{format_bytes(max_bytes)} (--max-data-bytes; default: half the available memory)"
        )


def write_idx(path, array) -> None:
    """Write an array as an IDX file, gzipped when ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : (d0, d1, ...) array-like
        uint8, int8, int16, int32, float32 or float64, at least one dimension.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    code = _IDX_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise DataError(f"{path}: IDX cannot store dtype {arr.dtype}")
    if arr.ndim == 0:
        raise DataError(f"{path}: IDX needs an array with at least one dimension")
    if max(arr.shape) >= 2**32:
        raise DataError(f"{path}: IDX dimensions must be < 2**32, got shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code])
    # mtime=0 keeps gzipped output byte-identical from run to run
    opener = gzip.GzipFile(path, "wb", mtime=0) if path.endswith(".gz") else open(path, "wb")
    with opener as f:
        f.write(header)
        f.write(payload.data)
