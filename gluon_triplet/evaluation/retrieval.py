"""Leave-one-out and query-vs-gallery retrieval: P@1, R@k, MAP@R, per-class P@1.

Ranking metrics break distance ties pessimistically: at equal distance a wrong-label item
ranks before a same-label one. A collapsed embedding (every row equal) therefore scores
0, not chance level, so it cannot pass for a working model.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from .arrays import (
    _as_chunk_size,
    _as_embedding,
    _as_ks,
    _encode_labels,
    _minus_two_gram,
    _row_sq_norms,
    _to_numpy,
)
from .neighbours import (
    _NUMPY_BLOCK_ELEMENTS,
    APPROXIMATE_MAX_QUERIES,
    APPROXIMATE_MAX_R,
    _beyond_float32,
    _faiss_relevance,
    _float32_rows,
    neighbour_method,
)
from .ranking import block_relevance, score_rankings

__all__ = ["gallery_retrieval_metrics", "per_class_precision_at_1", "retrieval_metrics"]


# Below this many query rows per thread, thread start-up costs more than it saves.
_MIN_ROWS_PER_WORKER = 128


def _worker_count(rows: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, rows // _MIN_ROWS_PER_WORKER))


def _ranked_relevance(
    x: np.ndarray,
    codes: np.ndarray,
    queries: np.ndarray,
    depth: int,
    chunk_size: int,
    gallery: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Neighbour relevance, one chunk of queries at a time.

    Yields ``(query_idx (Q,), relevant (Q, depth) bool)`` where ``relevant[i, r]`` says
    whether the ``r``-th nearest candidate of query ``query_idx[i]`` (a row of ``x``) has its
    label. Candidates are the *other* rows of ``x`` (leave-one-out), or the rows of
    ``gallery = (gallery_x, gallery_codes)`` when given (no row is excluded).

    Ranking key. Distances are non-negative float64 (``-0.0`` at worst; float32 with 32-bit
    keys for the ``"float32"`` search), whose IEEE bit patterns, read as unsigned integers,
    sort exactly like the values. Shifting the pattern
    left by one (which also drops the sign bit of ``-0.0``) frees the lowest bit for the
    same-label flag, so ``key = bits << 1 | same`` orders by distance first and, at exactly
    equal distance, puts wrong-label items (``0``) before same-label ones (``1``): the
    pessimistic tie rule, exact and without rounding the distances. The query's own column
    gets the largest key and never reaches the first ``depth <= N - 1`` places.

    Only ``(chunk_size, N)`` keys exist at a time; a partial sort (``partition``, linear
    time) selects the ``depth`` smallest per row and only those are sorted. The relevance
    is the low bit of each sorted key, so no neighbour indices are gathered.

    Everything after the GEMM (which BLAS already spreads over all cores) runs on row
    blocks in a few threads, as NumPy's selection, sort and ufunc loops use one core each
    but release the GIL.
    """
    gx, gcodes = (x, codes) if gallery is None else gallery
    sq = _row_sq_norms(gx, "gallery" if gallery is not None else "emb")
    qsq = sq if gallery is None else _row_sq_norms(x, "queries")
    workers = _worker_count(min(chunk_size, len(queries)))
    # One buffer for every chunk's distances: a fresh (chunk, N) array each time costs the
    # kernel's page faults and zeroing (a third of the GEMM's CPU time on 10,000 x 128).
    buffer = None
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(queries), chunk_size):
            q = queries[start : start + chunk_size]
            rows = x[q]
            if buffer is None:
                shape = (min(chunk_size, len(queries)), len(gx))
                buffer = np.empty(shape, dtype=np.result_type(rows, gx, -2.0))
            g = _minus_two_gram(rows, gx, out=buffer[: len(q)])
            edges = np.linspace(0, len(q), min(workers, len(q)) + 1).astype(int)
            blocks = [slice(lo, hi) for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist())]
            parts = pool.map(
                block_relevance,
                [g[b] for b in blocks],
                [qsq[q[b]] for b in blocks],
                [sq] * len(blocks),
                [codes[q[b]] for b in blocks],
                [gcodes] * len(blocks),
                [depth] * len(blocks),
                [q[b] if gallery is None else None for b in blocks],
            )
            yield q, np.concatenate(list(parts))


def _retrieval_setup(emb, labels, chunk_size):
    x = _as_embedding(emb, convert=False)
    codes, classes = _encode_labels(labels, x.shape[0])
    chunk_size = _as_chunk_size(chunk_size)
    counts = np.bincount(codes, minlength=len(classes))
    num_relevant = counts[codes] - 1
    queries = np.flatnonzero(num_relevant > 0)
    if queries.size == 0:
        raise ValueError(
            "no query has another item with its label (every class is a singleton); "
            "retrieval metrics are undefined"
        )
    return x, codes, classes, num_relevant, queries, chunk_size


def retrieval_metrics(
    emb,
    labels,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = 1024,
    method: str = "auto",
) -> Dict[str, float]:
    """Leave-one-out retrieval quality of an embedding on one labelled set.

    Every row queries all *other* rows, ranked by squared L2 distance.

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    labels : (N,) array-like of int or str
        ``(N, 1)`` is accepted as well.
    ks : iterable of positive int
        Cut-offs for ``recall_at_k``. A ``k`` above ``N - 1`` behaves as ``N - 1``.
    chunk_size : int
        Queries processed at once by the NumPy search; peak memory is about
        ``9 * chunk_size * N`` bytes, and ``chunk_size`` is lowered to keep
        ``chunk_size * N`` under 2**25.
    method : str
        The neighbour search (:func:`neighbour_method`): ``"auto"`` (exact up to
        :data:`APPROXIMATE_ABOVE` rows, faiss's approximate IVF index above, when faiss is
        installed), ``"numpy"``, ``"float32"`` (the NumPy search on float32 distances),
        ``"flat"`` or ``"ivf"``.

    Returns
    -------
    dict
        ``precision_at_1`` : float
            Fraction of queries whose nearest other row has the query's label
            (equals ``recall_at_1``).
        ``recall_at_{k}`` : float, for each ``k`` in ``ks``
            Fraction of queries with at least one same-label row among the ``k`` nearest
            (the metric-learning convention of Song et al. 2016, not set recall).
        ``map_at_r`` : float
            MAP@R of Musgrave et al. 2020: with ``R`` the number of other rows sharing the
            query's label, ``AP@R = (1/R) * sum_{i<=R} P@i * rel(i)``, averaged over queries.
        ``num_queries`` : int
            Queries that were scored.
        ``neighbours`` : str
            Only when the search was approximate: ``"approximate (IVF, nlist=...,
            nprobe=...; Q queries)"``: above :data:`APPROXIMATE_ABOVE` rows, a seeded
            sample of :data:`APPROXIMATE_MAX_QUERIES` queries, each ranking all the other
            rows. Without it, every query was ranked exactly.
        ``map_at_r_max_r`` : int
            Only with the IVF search when a class is larger: R of MAP@R was capped at
            :data:`APPROXIMATE_MAX_R`.

    Notes
    -----
    Queries whose label has no other member (singleton classes) are excluded: they cannot
    retrieve anything relevant. Their rows still take part as candidates for other
    queries. If no query remains, ``ValueError`` is raised.

    Ties are broken pessimistically: at exactly equal distance, wrong-label rows rank
    before same-label ones, so a collapsed embedding scores 0 rather than chance. The
    ranking is exact on the float64 distances (float32 with ``method="float32"``).
    """
    ks = _as_ks(ks)
    x, codes, classes, num_relevant, queries, chunk_size = _retrieval_setup(emb, labels, chunk_size)
    return _retrieval(x, codes, classes, num_relevant, queries, chunk_size, ks, method)[0]


def _retrieval(x, codes, classes, num_relevant, queries, chunk_size, ks, method, gallery=None):
    """Scores and per-class P@1 hits (``(C,)`` over ``classes``) from one search."""
    candidates = len(x) if gallery is None else len(gallery[0])
    method = neighbour_method(candidates, method)
    if method != "numpy" and _beyond_float32(x, "emb" if gallery is None else "query_emb"):
        method = "numpy"  # faiss's float32 would overflow; the NumPy search is float64
    if method != "numpy" and gallery is not None and _beyond_float32(gallery[0], "gallery"):
        method = "numpy"
    info: Dict[str, object] = {}
    if method == "ivf" and num_relevant.max() > APPROXIMATE_MAX_R:
        num_relevant = np.minimum(num_relevant, APPROXIMATE_MAX_R)
        info["map_at_r_max_r"] = APPROXIMATE_MAX_R
    if method == "ivf" and len(queries) > APPROXIMATE_MAX_QUERIES:
        rng = np.random.default_rng(0)
        queries = np.sort(rng.choice(queries, APPROXIMATE_MAX_QUERIES, replace=False))
    limit = candidates - (1 if gallery is None else 0)
    depth = min(max(max(ks), 1, int(num_relevant[queries].max())), limit)
    # Peak memory of the NumPy search: a few arrays of chunk x candidates float64.
    chunk_size = max(1, min(chunk_size, _NUMPY_BLOCK_ELEMENTS // candidates))
    exact: Dict[str, object] = {}

    def exact_rows(rows):
        if "x" not in exact:  # float64 (float32) copies, made only when a search needs them
            convert = _float32_rows if method == "float32" else _as_embedding
            exact["x"] = convert(x)
            if gallery is not None:
                exact["gallery"] = (convert(gallery[0]), gallery[1])
        return _ranked_relevance(
            exact["x"], codes, rows, depth, chunk_size, gallery=exact.get("gallery")
        )

    if method in ("numpy", "float32"):
        stream = exact_rows(queries)
    else:
        stream = _faiss_relevance(x, codes, queries, depth, gallery, method, exact_rows, info)
    hits = np.zeros(len(classes), dtype=np.int64)

    def counted(stream):
        for q, rel in stream:
            hits[:] += np.bincount(codes[q], weights=rel[:, 0], minlength=len(classes)).astype(
                np.int64
            )
            yield q, rel

    result = score_rankings(counted(stream), num_relevant, int(queries.size), depth, ks)
    result.update(info)
    return result, hits


def gallery_retrieval_metrics(
    query_emb,
    query_labels,
    gallery_emb,
    gallery_labels,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = 1024,
    method: str = "auto",
) -> Dict[str, float]:
    """Retrieval quality of queries searched against a separate gallery: every query ranks
    *all* gallery rows by squared L2 distance (a query also in the gallery finds itself).

    Parameters
    ----------
    query_emb : (Q, D) array-like, real, finite
    query_labels : (Q,) int or str
    gallery_emb : (M, D) array-like, real, finite
    gallery_labels : (M,) int or str, comparable with ``query_labels``
    ks : iterable of positive int
        Cut-offs for ``recall_at_k``; a ``k`` above ``M`` behaves as ``M``.
    chunk_size : int
        Queries processed at once; peak memory is about ``9 * chunk_size * M`` bytes.

    Returns
    -------
    dict
        ``precision_at_1``, ``recall_at_{k}`` and ``map_at_r`` as in
        :func:`retrieval_metrics`, with ``R`` the number of gallery rows sharing the
        query's label, and ``num_queries``: the queries scored. Queries whose label is not
        in the gallery are excluded (nothing relevant to retrieve); if none remains,
        ``ValueError``. Ties are broken pessimistically, as in :func:`retrieval_metrics`.
    """
    ks = _as_ks(ks)
    chunk_size = _as_chunk_size(chunk_size)
    q = _as_embedding(query_emb, "query_emb", convert=False)
    g = _as_embedding(gallery_emb, "gallery_emb", convert=False)
    if q.dtype != g.dtype:
        q, g = q.astype(np.float64, copy=False), g.astype(np.float64, copy=False)
    if g.shape[1] != q.shape[1]:
        raise ValueError(
            f"gallery_emb must have shape (M, D) = (M, {q.shape[1]}) like query_emb, got {g.shape}"
        )
    qy = _to_numpy(query_labels)
    gy = _to_numpy(gallery_labels)
    qy = qy[:, 0] if qy.ndim == 2 and qy.shape[1] == 1 else qy
    gy = gy[:, 0] if gy.ndim == 2 and gy.shape[1] == 1 else gy
    if qy.shape != (q.shape[0],):
        raise ValueError(f"query_labels must have shape (Q,) = ({q.shape[0]},), got {qy.shape}")
    if gy.shape != (g.shape[0],):
        raise ValueError(f"gallery_labels must have shape (M,) = ({g.shape[0]},), got {gy.shape}")
    # One code space for both sides, so equal labels get equal codes.
    codes, _ = _encode_labels(np.concatenate([qy, gy]), len(qy) + len(gy))
    qcodes, gcodes = codes[: len(qy)], codes[len(qy) :]
    counts = np.bincount(gcodes, minlength=int(codes.max()) + 1)
    num_relevant = counts[qcodes]
    queries = np.flatnonzero(num_relevant > 0)
    if queries.size == 0:
        raise ValueError("no query's label occurs in the gallery; retrieval metrics are undefined")
    classes = np.arange(int(codes.max()) + 1)
    gallery = (g, gcodes)
    return _retrieval(q, qcodes, classes, num_relevant, queries, chunk_size, ks, method, gallery)[0]


def per_class_precision_at_1(
    emb,
    labels,
    chunk_size: int = 1024,
    class_names: Optional[Sequence[str]] = None,
    method: str = "auto",
) -> Dict[object, float]:
    """Precision@1 of :func:`retrieval_metrics`, split by the query's class.

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    labels : (N,) array-like of int or str
    chunk_size : int
    class_names : sequence of str, optional
        The names of integer labels ``0, 1, ...``: the result's keys.

    Returns
    -------
    dict
        ``{class name (or label): P@1 over that class's queries}`` with labels as plain
        Python values, in sorted label order. Singleton classes have no scorable query and
        are omitted.
    """
    x, codes, classes, num_relevant, queries, chunk_size = _retrieval_setup(emb, labels, chunk_size)
    ones = np.minimum(num_relevant, 1)  # depth 1: P@1 alone
    _, hits = _retrieval(x, codes, classes, ones, queries, chunk_size, (1,), method)
    return _per_class(hits, codes, classes, queries, class_names)


def _per_class(hits, codes, classes, queries, class_names):
    totals = np.bincount(codes[queries], minlength=len(classes))
    names = list(class_names or ())

    def key(c: int):
        label = _plain(classes[c])
        return names[label] if isinstance(label, int) and 0 <= label < len(names) else label

    return {key(c): float(hits[c] / totals[c]) for c in np.flatnonzero(totals).tolist()}


def _plain(value):
    # Numpy scalars as dict keys break json.dumps; their Python equivalents do not.
    return value.item() if isinstance(value, np.generic) else value
