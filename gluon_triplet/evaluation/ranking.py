"""The ranking of one block of queries, and the scores of every block's ranking.

:func:`block_relevance` ranks candidates by exact integer keys built from the distances'
bit patterns (the pessimistic tie rule, see :func:`~.retrieval._ranked_relevance`);
:func:`score_rankings` turns the relevance rows into P@1, R@k and MAP@R.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

from .arrays import _finish_sq_dists

__all__ = ["block_relevance", "score_rankings"]

# The unsigned integers whose bit patterns rank float64 (float32) distances, and the key
# given to a query's own column: above every real key (see ``retrieval._ranked_relevance``).
_KEY_TYPES = {np.dtype(np.float64): np.uint64, np.dtype(np.float32): np.uint32}


def block_relevance(
    g: np.ndarray,
    qn: np.ndarray,
    sq: np.ndarray,
    qcodes: np.ndarray,
    codes: np.ndarray,
    depth: int,
    self_cols: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Relevance of the ``depth`` nearest candidates of a block of queries; overwrites ``g``.

    ``g`` is ``_minus_two_gram(queries, candidates)``, ``qn`` and ``sq`` the squared norms of
    the queries and candidates, ``qcodes`` and ``codes`` their label codes. ``self_cols``
    (leave-one-out) is each query's own column, which is never ranked.
    """
    dists = _finish_sq_dists(g, qn, sq)
    # float32 distances (the "float32" search) get 32-bit keys, in place: a non-negative
    # float32's pattern is below 2**31, so the shifted key with its flag still fits, in
    # the same order with the same ties as the float64 key of the widened distance, at
    # half the memory the selection and the sort go through.
    key_type: Any = _KEY_TYPES.get(dists.dtype, np.uint64)
    keys = dists.astype(np.float64, copy=False) if key_type is np.uint64 else dists
    keys = keys.view(key_type)
    np.left_shift(keys, key_type(1), out=keys)
    np.bitwise_or(keys, qcodes[:, None] == codes[None, :], out=keys)
    if self_cols is not None:
        keys[np.arange(len(self_cols)), self_cols] = np.iinfo(key_type).max
    if depth == 1:
        top = keys.min(axis=1, keepdims=True)
    else:
        keys.partition(depth - 1, axis=1)
        top = np.sort(keys[:, :depth], axis=1)
    return (top & key_type(1)).astype(bool)


def score_rankings(
    stream: Iterable[Tuple[np.ndarray, np.ndarray]],
    num_relevant: np.ndarray,
    num_queries: int,
    depth: int,
    ks: Tuple[int, ...],
) -> Dict[str, float]:
    """P@1, R@k and MAP@R from the relevance rows of :func:`~.retrieval._ranked_relevance`."""
    # k = 1 is always counted: precision_at_1 is reported whatever ks holds.
    counted = tuple(sorted(set(ks) | {1}))
    cuts = np.minimum(counted, depth)
    hits = np.zeros(len(counted), dtype=np.int64)
    ap_sum = 0.0
    for q, rel in stream:
        first_hit = np.where(rel.any(axis=1), rel.argmax(axis=1), depth)
        hits += (first_hit[:, None] < cuts[None, :]).sum(axis=0)
        r = num_relevant[q]
        # AP@R only visits the relevant ranks i <= R; there P@i = (how many relevant so far)
        # / i, and the running count is the hit's position within its row of nonzero().
        rows, cols = np.nonzero(rel & (np.arange(depth)[None, :] < r[:, None]))
        row_start = np.searchsorted(rows, rows)
        precision = (np.arange(1, len(rows) + 1) - row_start) / (cols + 1.0)
        ap = np.bincount(rows, weights=precision, minlength=len(q)) / r
        ap_sum += float(ap.sum())
    recall = {k: float(h / num_queries) for k, h in zip(counted, hits.tolist())}
    result: Dict[str, float] = {"precision_at_1": recall[1]}
    for k in ks:
        result[f"recall_at_{k}"] = recall[k]
    result["map_at_r"] = ap_sum / num_queries
    result["num_queries"] = num_queries
    return result
