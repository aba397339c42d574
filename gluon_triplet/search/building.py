"""What an index is built from: the parameters of its kinds, its checked inputs, and the
faiss index of a kind.

Kinds (``kind=``):

- ``"flat"``: ``faiss.IndexFlatL2``, exact; the default.
- ``"hnsw"``: ``faiss.IndexHNSWFlat``, a graph; approximate, fast queries, slow to build.
  Parameters ``m`` (links per node, 32), ``ef_construction`` (40), ``ef_search`` (64).
- ``"ivf"``: ``faiss.IndexIVFFlat``, k-means cells; approximate, fast to build.
  Parameters ``nlist`` (cells; default ``sqrt(N)``, at most ``N / 39`` so that k-means has
  enough points per cell) and ``nprobe`` (cells visited per query; default ``nlist / 64``,
  at least 8, at most ``nlist``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from .store import INDEX_KINDS, _faiss

__all__ = [
    "DEFAULT_PARAMS",
    "as_vectors",
    "faiss_index",
    "ids_array",
    "labels_array",
    "metric_for_distance",
    "normalized",
    "paths_list",
    "positive",
    "resolve_params",
]

#: Parameters of each kind and their defaults (``None``: chosen from the number of rows).
DEFAULT_PARAMS: Dict[str, Dict[str, Any]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 40, "ef_search": 64},
    "ivf": {"nlist": None, "nprobe": None},
}

# faiss's k-means wants this many training points per cell; fewer gives a poor quantizer.
_POINTS_PER_CELL = 39


def metric_for_distance(distance: str) -> str:
    """The index metric of a run's ``Config.distance``.

    ``squared`` and ``euclidean`` rank alike and map to ``"squared_l2"``; ``cosine`` to
    ``"cosine"``.
    """
    if distance in ("squared", "euclidean"):
        return "squared_l2"
    if distance == "cosine":
        return "cosine"
    raise ValueError(f"unknown distance {distance!r}; choose one of: squared, euclidean, cosine")


def resolve_params(kind: str, n: int, params: Dict[str, Any]) -> Dict[str, int]:
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of: {', '.join(INDEX_KINDS)}")
    defaults = DEFAULT_PARAMS[kind]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for a {kind} index; valid: {valid}"
        )
    out = dict(defaults)
    out.update({k: v for k, v in params.items() if v is not None})
    if kind == "ivf":
        if out["nlist"] is None:
            # ~sqrt(N) cells, but enough training points per cell for k-means.
            out["nlist"] = max(1, min(int(round(math.sqrt(n))), n // _POINTS_PER_CELL))
        if out["nprobe"] is None:
            # recall@10 >= 0.99 at 60k and 1M items (bench/search.py)
            out["nprobe"] = max(8, out["nlist"] // 64)
        out["nprobe"] = min(out["nprobe"], out["nlist"])
        if out["nlist"] > n:
            raise ValueError(f"nlist={out['nlist']} is larger than the {n} vectors to index")
    return {key: positive(value, f"{kind} parameter {key}") for key, value in out.items()}


def positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def as_vectors(emb, dim: Optional[int], what: str) -> np.ndarray:
    arr = emb.asnumpy() if hasattr(emb, "asnumpy") else np.asarray(emb)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (N, D) embeddings, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} must be non-empty, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(
            f"{what} have embedding size {arr.shape[1]}, but the index holds size-{dim} "
            "embeddings (another model?)"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} must be finite (no NaN or inf)")
    return arr


def normalized(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # A zero vector stays zero rather than becoming NaN.
    return x / np.maximum(norms, np.float32(1e-12))


def labels_array(labels, n: int, what: str = "labels") -> Optional[np.ndarray]:
    if labels is None:
        return None
    arr = labels.asnumpy() if hasattr(labels, "asnumpy") else np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape (N,) = ({n},), got {arr.shape}")
    if arr.dtype.kind not in "biuU":
        raise ValueError(f"{what} must be integers or strings, got dtype {arr.dtype}")
    return arr


def paths_list(paths, n: int) -> Optional[list]:
    if paths is None:
        return None
    out = [None if p is None else str(p) for p in paths]
    if len(out) != n:
        raise ValueError(f"paths must list one path per row ({n}), got {len(out)}")
    return out


def ids_array(ids, n: int) -> np.ndarray:
    """The id of each of ``n`` rows: ``0 .. n-1`` by default, else ``ids`` checked."""
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.shape != (n,) or ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be (N,) = ({n},) integers, got {ids.shape} {ids.dtype}")
    return ids


def faiss_index(x: np.ndarray, kind: str, params: Dict[str, int]):
    """A faiss index of ``kind`` (parameters resolved) holding the rows of ``x``, (N, D)."""
    faiss = _faiss()
    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["m"])
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, params["nlist"])
        index.train(x)
    index.add(x)
    return index
