"""Samples of npz and IDX files read in place, for arrays bigger than ``--max-memory``.

An uncompressed npz member or IDX file holds its array as raw bytes at a known offset, so
NumPy can map it (``np.memmap``) instead of reading it: :func:`map_npz_member` and
:func:`map_idx` return such maps, and :class:`MappedSamples` serves them to
:class:`~gluon_triplet.data.streaming.LazyImages` one batch at a time, in the package's layout
and as float32 exactly as the in-memory loaders would have made them. A compressed member
or a gzipped IDX file cannot be read in place; it raises a :class:`DataError` that says
what to do.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import Optional, Tuple

import numpy as np

from ..errors import DataError
from .decoding import OK
from .idx import idx_header, open_idx
from .layout import apply_layout, array_layout

__all__ = ["MappedSamples", "map_idx", "map_npz_member", "npy_header"]

# A zip local file header: signature, versions/flags/method/time/date/crc/sizes, then the
# lengths of the file name and of the extra field (PKWARE APPNOTE 4.3.7).
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_MAGIC = b"PK\x03\x04"


def _compressed_error(where: str, what: str, need: int, max_memory: float, fix: str) -> DataError:
    from ..resources import format_bytes

    return DataError(
        f"{where}: {what} needs {format_bytes(need)} as float32, above --max-memory "
        f"{max_memory:g} GiB, and is compressed, so it cannot be read batch by batch; {fix}, "
        f"or raise --max-memory to {need / 2**30:.2f} or more"
    )


def npy_header(f) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header of the ``.npy`` stream ``f``."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    if version == (1, 0):
        return npy.read_array_header_1_0(f)
    if version == (2, 0):
        return npy.read_array_header_2_0(f)
    # 3.0 (utf-8 field names) has no public reader; same layout as 2.0
    return npy._read_array_header(f, version)  # type: ignore[attr-defined]


def map_npz_member(path: str, key: str, max_memory: float) -> np.memmap:
    """Array ``key`` of the npz archive ``path``, mapped read-only where it is stored.

    Raises
    ------
    DataError
        The member is compressed (``np.savez_compressed``), in Fortran order, holds
        objects, or is shorter than its header says.
    """
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(key + ".npy")
            with z.open(info) as member:  # the .npy header only: cheap even compressed
                shape, fortran, dtype = npy_header(member)
                header_len = member.tell()
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            head = f.read(_LOCAL_HEADER.size)
    except Exception as e:  # BadZipFile, KeyError, ValueError from a bad .npy header
        raise DataError(f"{path}: array {key!r}: cannot be read in place ({e})") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise _compressed_error(
            path,
            f"array {key!r} of shape {tuple(shape)}",
            int(np.prod(shape, dtype=np.int64)) * 4,
            max_memory,
            "save it with np.savez (not np.savez_compressed) to stream it",
        )
    if len(head) < _LOCAL_HEADER.size or head[:4] != _LOCAL_MAGIC:
        raise DataError(f"{path}: array {key!r}: damaged zip entry")
    if dtype.hasobject:
        raise DataError(f"{path}: contains pickled objects; refusing to load")
    if fortran and len(shape) > 1:
        raise DataError(
            f"{path}: array {key!r} is in Fortran order, which cannot be read batch by "
            "batch; save np.ascontiguousarray(x) instead"
        )
    *_, name_len, extra_len = _LOCAL_HEADER.unpack(head)
    offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header_len
    return _memmap(path, f"array {key!r}", dtype, shape, offset, info.file_size - header_len)


def map_idx(path: str, max_memory: float) -> np.memmap:
    """The array of the IDX file ``path``, mapped read-only where it is stored.

    Raises
    ------
    DataError
        A gzipped file (it cannot be mapped), a bad header, or a file whose length is
        not what its header declares.
    """
    with open_idx(path) as (f, size, gz):
        dtype, dims = idx_header(f, path)
    offset = 4 + 4 * len(dims)
    if gz:
        need = int(np.prod(dims, dtype=np.int64)) * 4
        raise _compressed_error(
            path,
            f"IDX data of shape {tuple(dims)}",
            need,
            max_memory,
            f"decompress it (gunzip {os.path.basename(path)}) to stream it",
        )
    return _memmap(path, "IDX data", dtype, dims, offset, size - offset)


def _memmap(path, what, dtype, shape, offset, available) -> np.memmap:
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if available != expected:
        raise DataError(
            f"{path}: {what} should hold {expected} bytes of data, the file has {available}"
        )
    if expected == 0:
        raise DataError(f"{path}: {what} of shape {tuple(shape)} is empty")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


class MappedSamples:
    """The samples of a mapped array, as the dataset of a LazyImages.

    :meth:`decode_batch` reads the rows it is asked for from the file (the page cache),
    turns 4-D samples into the package's layout and returns ``uint8`` rows as they are
    (LazyImages scales them to [0, 1] as the in-memory loaders do) and other dtypes as
    float32.

    Parameters
    ----------
    array : (N, ...) np.memmap
    where : str
        The file and array, for messages.
    indices : (M,) int array, optional
        Rows of ``array`` this dataset serves (default: all).
    layout : (bool, int), optional
        From :func:`~gluon_triplet.data.layout.array_layout` (default: worked out and logged).
    """

    def __init__(
        self,
        array: np.ndarray,
        where: str,
        indices: Optional[np.ndarray] = None,
        layout: Optional[Tuple[bool, int]] = None,
    ):
        self.array = array
        self.where = where
        self.indices = np.arange(len(array)) if indices is None else np.asarray(indices)
        if layout is None and array.ndim == 4:
            layout = array_layout(array.shape, where)
        self.layout = layout
        one = np.zeros((1, *array.shape[1:]), array.dtype)
        self.sample_shape: Tuple[int, ...] = (apply_layout(one, layout) if layout else one).shape[
            1:
        ]

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, positions) -> MappedSamples:
        return MappedSamples(
            self.array, self.where, self.indices[np.asarray(positions)], self.layout
        )

    def concat(self, other: MappedSamples) -> MappedSamples:
        if other.array is not self.array:
            raise ValueError("concat: the datasets read different arrays")
        both = np.concatenate([self.indices, other.indices])
        return MappedSamples(self.array, self.where, both, self.layout)

    def name(self, i: int) -> str:
        return f"{self.where} sample {int(self.indices[i])}"

    def decode_batch(self, items) -> Tuple[np.ndarray, np.ndarray]:
        """Rows ``items`` as ``(M, ...)`` uint8 (kept) or float32, and an all-``OK`` status.

        Raises
        ------
        DataError
            A float row holding NaN or an infinity (checked here, one batch at a time,
            as the in-memory loader checks the whole array).
        """
        rows = self.indices[np.asarray(items)]
        x = np.asarray(self.array[rows])
        if self.layout:
            x = apply_layout(x, self.layout)
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
            bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
            if bad.any():
                raise DataError(
                    f"{self.where}: samples contain NaN or infinite values "
                    f"(sample {int(rows[np.flatnonzero(bad)[0]])})"
                )
        return x, np.full(len(x), OK, dtype=np.int32)
