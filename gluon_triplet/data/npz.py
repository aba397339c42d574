"""The ``npz:FILE`` source: ``x_train, y_train, x_test, y_test`` (or ``x, y``, split 80/20
per class), every header checked before NumPy inflates an array; no pickles."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple
from zipfile import ZIP_STORED

import numpy as np

from ..errors import DataError
from ..resources import short_reason
from .bundle import DataBundle, above_max_memory, checked_samples, make_bundle, stratified_split
from .idx import check_array_size

__all__ = ["load_npz"]

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str, name: str, max_bytes: Optional[int] = None, options=None) -> DataBundle:
    """The arrays of the npz archive ``path`` as a bundle named ``name``; see
    :func:`~gluon_triplet.data.datasets.load_dataset`."""
    if not os.path.isfile(path):
        raise DataError(f"npz file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{path}: a single .npy array, not an .npz archive of x/y arrays")
    if not head.startswith(b"PK"):
        if head.startswith(b"\x80"):
            raise DataError(f"{path}: contains pickled objects; refusing to load")
        raise DataError(f"{path}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            found = sorted(z.files)
            keys: Sequence[str] = _NPZ_KEYS if set(_NPZ_KEYS) <= set(found) else ("x", "y")
            if not set(keys) <= set(found):
                raise DataError(
                    f"{path}: expected keys x_train, y_train, x_test, y_test (or x, y); "
                    f"found: {', '.join(found) or 'none'}"
                )
            # From the headers, before NumPy inflates and allocates the arrays.
            headers = {k: _npz_member_header(z, k, path) for k in keys}
            samples = [k for k in keys if k.startswith("x")]
            stream = above_max_memory([headers[k][0] for k in samples], options, path)
            mapped = samples if stream else []
            for k in keys:
                shape, dtype = headers[k]
                # A compressed member cannot be mapped: past this size check it is refused
                # by map_npz_member, with what to do.
                in_place = k in mapped and z.zip.getinfo(k + ".npy").compress_type == ZIP_STORED
                if not dtype.hasobject and not in_place:  # np.load refuses objects
                    check_array_size(path, f"array {k!r}", shape, dtype, max_bytes)
            arrays: Dict[str, np.ndarray] = {k: z[k] for k in keys if k not in mapped}
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path}: contains pickled objects; refusing to load") from None
        raise DataError(f"{path}: unreadable .npz archive ({e})") from None
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError, OSError ...
        raise DataError(f"{path}: unreadable .npz archive ({short_reason(e)})") from None
    if mapped:
        from .mapped import map_npz_member

        for k in mapped:
            arrays[k] = map_npz_member(path, k, options.max_memory)
    lazy = options if stream else None

    if "x" in arrays:
        x, y = checked_samples(arrays["x"], arrays["y"], path, "x/y", lazy)
        del arrays
        train, test = stratified_split(y)
        x_train, x_test = _split_rows(x, train, test)
        return make_bundle(name, path, (x_train, y[train]), (x_test, y[test]), None)
    train_xy = checked_samples(arrays["x_train"], arrays["y_train"], path, "train", lazy)
    test_xy = checked_samples(arrays["x_test"], arrays["y_test"], path, "test", lazy)
    return make_bundle(name, path, train_xy, test_xy, None)


def _npz_member_header(z, key: str, path: str) -> Tuple[Tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of an open npz archive, read from its ``.npy``
    header without inflating the data."""
    from .mapped import npy_header

    try:
        with z.zip.open(key + ".npy") as f:
            shape, _, dtype = npy_header(f)
    except DataError:
        raise
    except Exception as e:  # ValueError (bad header), BadZipFile, zlib.error, KeyError
        raise DataError(
            f"{path}: array {key!r}: unreadable .npy header ({short_reason(e)})"
        ) from None
    return tuple(shape), np.dtype(dtype)


def _split_rows(x, train: np.ndarray, test: np.ndarray):
    """``(x[train], x[test])`` for sorted disjoint ``train`` and ``test`` covering ``x``.

    An array the loader owns is reordered in place, train rows first, and both parts are
    views of it (the extra memory is a copy of the test rows); streamed samples and
    arrays it cannot write are indexed.
    """
    if (
        not isinstance(x, np.ndarray)
        or not x.flags.writeable
        or not x.flags.c_contiguous
        or len(train) + len(test) != len(x)
    ):
        return _take(x, train), _take(x, test)
    held = x[test]
    # train is sorted, so train[i] >= i: moving rows forward in order of their new place
    # never overwrites a row that has yet to move; each block is gathered before it lands.
    step = max(1, 2**24 // max(1, x[0].nbytes))
    for start in range(0, len(train), step):
        block = train[start : start + step]
        if block[0] != start or block[-1] != start + len(block) - 1:
            x[start : start + len(block)] = x[block]
    x[len(train) :] = held
    del held
    return x[: len(train)], x[len(train) :]


def _take(x, idx):
    """Rows ``idx`` of an array, or of streamed samples without reading them."""
    return x.subset(idx) if hasattr(x, "subset") else x[idx]
