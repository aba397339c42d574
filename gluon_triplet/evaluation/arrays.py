"""Checked NumPy inputs of the metrics (embeddings, labels, indices) and squared L2
distances between embeddings, computed in blocks."""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

__all__: List[str] = []


# --------------------------------------------------------------------------- validation


def _to_numpy(x):
    # Duck-typed so MXNet NDArrays work without this module importing MXNet.
    if hasattr(x, "asnumpy"):
        return x.asnumpy()
    return np.asarray(x)


def _as_embedding(emb, name: str = "emb", convert: bool = True) -> np.ndarray:
    """``(N, D)`` finite real array as float64 (float32 inputs convert exactly); with
    ``convert=False`` float32 stays float32 (other dtypes become float64)."""
    arr = _to_numpy(emb)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if not (arr.dtype == np.float32 and not convert):
        arr = arr.astype(np.float64, copy=False)
    # In blocks of rows: a whole-array check would allocate N x D booleans.
    step = max(1, 2**22 // arr.shape[1])
    for start in range(0, arr.shape[0], step):
        if not np.isfinite(arr[start : start + step]).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _row_sq_norms(x: np.ndarray, name: str = "emb") -> np.ndarray:
    sq = np.einsum("ij,ij->i", x, x)
    if not np.isfinite(sq).all():
        # Would turn into inf - inf = NaN distances further on.
        raise ValueError(f"{name} is too large: squared row norms overflow float64")
    return sq


def _encode_labels(labels, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(N,)`` labels of any orderable dtype -> ``(codes (N,) int64, classes (C,))``.

    An ``(N, 1)`` column is accepted too, as many loaders return labels that way.
    """
    arr = _to_numpy(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape (N,) = ({n},), got {arr.shape}")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:
        raise ValueError(
            f"labels must be mutually orderable (e.g. all int or all str): {err}"
        ) from err
    return codes.reshape(-1).astype(np.int64, copy=False), classes


def _as_index(idx, name: str, n: int) -> np.ndarray:
    arr = _to_numpy(idx)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (T,), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        # Negative indices are rejected rather than wrapped: they are a bug upstream.
        if lo < 0 or hi >= n:
            raise ValueError(f"{name} out of range [0, {n}): min {lo}, max {hi}")
    return arr.astype(np.intp, copy=False)


def _as_distance_pair(ap_dist, an_dist) -> Tuple[np.ndarray, np.ndarray]:
    ap = np.asarray(ap_dist, dtype=np.float64)
    an = np.asarray(an_dist, dtype=np.float64)
    if ap.ndim != 1:
        raise ValueError(f"ap_dist must be 1-D (T,), got shape {ap.shape}")
    if an.shape != ap.shape:
        raise ValueError(f"an_dist must have shape (T,) = {ap.shape}, got {an.shape}")
    if ap.size == 0:
        raise ValueError("ap_dist and an_dist must be non-empty")
    return ap, an


def _as_ks(ks) -> Tuple[int, ...]:
    try:
        given = list(ks)
        values = [int(k) for k in given]
        bad = [k for k, v in zip(given, values) if v != k or v < 1]
    except (TypeError, ValueError):
        raise ValueError(f"ks must be an iterable of positive integers, got {ks!r}") from None
    if not values or bad:
        raise ValueError(f"ks must be a non-empty iterable of positive integers, got {ks!r}")
    return tuple(sorted(set(values)))


def _as_chunk_size(chunk_size) -> int:
    try:
        value = int(chunk_size)
        valid = value == chunk_size and value >= 1
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return value


# ---------------------------------------------------------------------------- distances


def _minus_two_gram(q: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``(Q, D), (M, D) -> (Q, M)`` values ``-2 q_i . x_j``, into ``out`` when given (a
    ``(Q, M)`` C-contiguous array of the result's dtype)."""
    # Scaling by -2 is exact, so doing it on the small operand saves a pass over (Q, M).
    return np.matmul(q * -2.0, x.T, out=out)


def _finish_sq_dists(g: np.ndarray, qn: np.ndarray, xn: np.ndarray) -> np.ndarray:
    """Turn ``-2 q_i . x_j`` into ``|q_i|^2 + |x_j|^2 - 2 q_i . x_j`` in place."""
    g += xn
    g += qn[:, None]
    # Cancellation can leave tiny negatives where the true distance is ~0.
    np.maximum(g, 0.0, out=g)
    return g
