"""Embedding-quality metrics as pure, vectorised NumPy functions.

Nothing here imports MXNet: every function takes plain arrays (``(N, D)`` embeddings,
``(N,)`` labels, ``(T,)`` triplet indices) and returns arrays or Python floats, so the
metrics can be tested without a network and reused on raw features as a baseline.

Distances are *squared* L2 throughout, the quantity ``gluon.loss.TripletLoss`` compares.

Ranking metrics break distance ties pessimistically: at equal distance a wrong-label item
ranks before a same-label one. A collapsed embedding (every row equal) therefore scores
0, not chance level, so it cannot pass for a working model.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "active_triplet_fraction",
    "ami",
    "CLUSTERING_MAX_POINTS",
    "CLUSTERING_MAX_WORK",
    "clustering_metrics",
    "evaluate_embeddings",
    "gallery_retrieval_metrics",
    "kmeans_clusters",
    "nmi",
    "pairwise_squared_distances",
    "per_class_precision_at_1",
    "retrieval_metrics",
    "strict_triplet_accuracy",
    "triplet_difficulty",
    "triplet_distances",
]

# Sort key given to a query's own column: above every real key (see ``_ranked_relevance``).
_SELF_KEY = np.iinfo(np.uint64).max

# Below this many query rows per thread, thread start-up costs more than it saves.
_MIN_ROWS_PER_WORKER = 128


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


def _minus_two_gram(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(Q, D), (M, D) -> (Q, M)`` values ``-2 q_i . x_j``."""
    # Scaling by -2 is exact, so doing it on the small operand saves a pass over (Q, M).
    return (q * -2.0) @ x.T


def _finish_sq_dists(g: np.ndarray, qn: np.ndarray, xn: np.ndarray) -> np.ndarray:
    """Turn ``-2 q_i . x_j`` into ``|q_i|^2 + |x_j|^2 - 2 q_i . x_j`` in place."""
    g += xn
    g += qn[:, None]
    # Cancellation can leave tiny negatives where the true distance is ~0.
    np.maximum(g, 0.0, out=g)
    return g


def _sq_dists(q: np.ndarray, qn: np.ndarray, x: np.ndarray, xn: np.ndarray) -> np.ndarray:
    """``(Q, D), (Q,), (M, D), (M,) -> (Q, M)`` squared L2 via one GEMM."""
    return _finish_sq_dists(_minus_two_gram(q, x), qn, xn)


def pairwise_squared_distances(a, b=None) -> np.ndarray:
    """All squared Euclidean distances between the rows of ``a`` and ``b``.

    Parameters
    ----------
    a : (N, D) array-like, real, finite
    b : (M, D) array-like, real, finite, optional
        Defaults to ``a``.

    Returns
    -------
    (N, M) float64
        ``|a_i|^2 + |b_j|^2 - 2 a_i . b_j``, computed in float64 and clipped at 0. When
        ``b`` is None the diagonal is exactly 0.

    Notes
    -----
    This materialises the whole ``(N, M)`` matrix; :func:`retrieval_metrics` works in
    query chunks instead.
    """
    a = _as_embedding(a, "a")
    an = _row_sq_norms(a, "a")
    if b is None:
        d = _sq_dists(a, an, a, an)
        # The GEMM form leaves rounding noise of order eps * |a_i|^2 on the diagonal.
        np.fill_diagonal(d, 0.0)
        return d
    b = _as_embedding(b, "b")
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"b must have shape (M, D) = (M, {a.shape[1]}), got {b.shape}")
    return _sq_dists(a, an, b, _row_sq_norms(b, "b"))


def triplet_distances(emb, anchor_idx, positive_idx, negative_idx):
    """Squared L2 anchor-positive and anchor-negative distances of index triplets.

    Computed from direct row differences (not the GEMM expansion), so equal rows give
    exactly 0 -- the same quantity ``gluon.loss.TripletLoss`` compares.

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    anchor_idx, positive_idx, negative_idx : (T,) int
        Row indices into ``emb``, each in ``[0, N)``.

    Returns
    -------
    ap_dist, an_dist : (T,) float64
    """
    emb = _as_embedding(emb, convert=False)
    n = emb.shape[0]
    a = _as_index(anchor_idx, "anchor_idx", n)
    p = _as_index(positive_idx, "positive_idx", n)
    g = _as_index(negative_idx, "negative_idx", n)
    if not len(a) == len(p) == len(g):
        raise ValueError(
            "anchor_idx, positive_idx, negative_idx must have equal lengths, "
            f"got {len(a)}, {len(p)}, {len(g)}"
        )
    ap = np.empty(len(a))
    an = np.empty(len(a))
    step = max(1, 2**21 // emb.shape[1])  # rows gathered at once, in float64
    for s in range(0, len(a), step):
        anchors = emb[a[s : s + step]].astype(np.float64)
        diff = anchors - emb[p[s : s + step]]
        ap[s : s + step] = np.einsum("ij,ij->i", diff, diff)
        np.subtract(anchors, emb[g[s : s + step]], out=diff)
        an[s : s + step] = np.einsum("ij,ij->i", diff, diff)
    return ap, an


def strict_triplet_accuracy(ap_dist, an_dist) -> float:
    """Fraction of triplets whose positive is strictly closer than the negative.

    Ties count as failures, so a collapsed embedding (all rows equal, every distance 0)
    scores 0.0 rather than 1.0. NaN distances also count as failures.

    Parameters
    ----------
    ap_dist, an_dist : (T,) float, T >= 1

    Returns
    -------
    float
    """
    ap, an = _as_distance_pair(ap_dist, an_dist)
    return float(np.count_nonzero(ap < an) / ap.size)


def active_triplet_fraction(ap_dist, an_dist, margin: float = 1.0) -> float:
    """Fraction of triplets that still contribute to ``TripletLoss(margin)``.

    A triplet is active when ``ap_dist - an_dist + margin > 0``, i.e. its hinge loss is
    non-zero.

    Parameters
    ----------
    ap_dist, an_dist : (T,) float, T >= 1
    margin : float

    Returns
    -------
    float
    """
    ap, an = _as_distance_pair(ap_dist, an_dist)
    margin = float(margin)
    if not np.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin}")
    return float(np.count_nonzero(ap - an + margin > 0) / ap.size)


def triplet_difficulty(ap_dist, an_dist, margin: float = 1.0) -> Dict[str, float]:
    """Split triplets into easy, semi-hard and hard, as FaceNet does.

    ``hard``: ``an_dist <= ap_dist`` (wrong or tied); ``semi_hard``:
    ``ap_dist < an_dist < ap_dist + margin`` (right, but still inside the margin);
    ``easy``: ``an_dist >= ap_dist + margin`` (no loss). The three fractions sum to 1.

    Parameters
    ----------
    ap_dist, an_dist : (T,) float, T >= 1
    margin : float

    Returns
    -------
    dict with ``easy_fraction``, ``semi_hard_fraction``, ``hard_fraction``
    """
    ap, an = _as_distance_pair(ap_dist, an_dist)
    hard = np.count_nonzero(~(ap < an))  # NaN counts as hard, like a tie
    easy = np.count_nonzero(an >= ap + float(margin))
    return {
        "easy_fraction": easy / ap.size,
        "semi_hard_fraction": (ap.size - hard - easy) / ap.size,
        "hard_fraction": hard / ap.size,
    }


# ---------------------------------------------------------------------------- retrieval


def _worker_count(rows: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, rows // _MIN_ROWS_PER_WORKER))


def _block_relevance(
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
    keys = _finish_sq_dists(g, qn, sq).view(np.uint64)
    np.left_shift(keys, np.uint64(1), out=keys)
    np.bitwise_or(keys, qcodes[:, None] == codes[None, :], out=keys)
    if self_cols is not None:
        keys[np.arange(len(self_cols)), self_cols] = _SELF_KEY
    if depth == 1:
        top = keys.min(axis=1, keepdims=True)
    else:
        keys.partition(depth - 1, axis=1)
        top = np.sort(keys[:, :depth], axis=1)
    return (top & np.uint64(1)).astype(bool)


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

    Ranking key. Distances are non-negative float64 (``-0.0`` at worst), whose IEEE bit
    patterns, read as unsigned integers, sort exactly like the values. Shifting the pattern
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
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(queries), chunk_size):
            q = queries[start : start + chunk_size]
            g = _minus_two_gram(x[q], gx)
            edges = np.linspace(0, len(q), min(workers, len(q)) + 1).astype(int)
            blocks = [slice(lo, hi) for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist())]
            parts = pool.map(
                _block_relevance,
                [g[b] for b in blocks],
                [qsq[q[b]] for b in blocks],
                [sq] * len(blocks),
                [codes[q[b]] for b in blocks],
                [gcodes] * len(blocks),
                [depth] * len(blocks),
                [q[b] if gallery is None else None for b in blocks],
            )
            yield q, np.concatenate(list(parts))


def _score_rankings(
    stream: Iterable[Tuple[np.ndarray, np.ndarray]],
    num_relevant: np.ndarray,
    num_queries: int,
    depth: int,
    ks: Tuple[int, ...],
) -> Dict[str, float]:
    """P@1, R@k and MAP@R from the relevance rows of :func:`_ranked_relevance`."""
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
        installed), ``"numpy"``, ``"flat"`` or ``"ivf"``.

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
    ranking is exact on the float64 distances (see ``_ranked_relevance``).

    The full ``(N, N)`` distance matrix is never built: queries are processed in chunks of
    ``chunk_size`` against all ``N`` rows, and only the ``max(max(ks), max R)`` nearest per
    query are sorted.
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
        if "x" not in exact:  # float64 copies, made only when a search needs them
            exact["x"] = _as_embedding(x)
            if gallery is not None:
                exact["gallery"] = (_as_embedding(gallery[0], "gallery_emb"), gallery[1])
        return _ranked_relevance(
            exact["x"], codes, rows, depth, chunk_size, gallery=exact.get("gallery")
        )

    if method == "numpy":
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

    result = _score_rankings(counted(stream), num_relevant, int(queries.size), depth, ks)
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
    """Retrieval quality of queries searched against a separate gallery.

    The usual way retrieval is reported (e.g. test queries against the training set):
    every query ranks *all* gallery rows by squared L2 distance; nothing is excluded, so a
    query that also appears in the gallery finds itself.

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


# ------------------------------------------------------------------ neighbours by faiss

#: Above this many candidates a query ranks, neighbours come from a faiss IVF index:
#: approximate, and said so in the result (``neighbours``). At or below it (or without
#: faiss), from the exact float64 NumPy search in blocks of queries.
APPROXIMATE_ABOVE = 50_000

#: With the IVF index a query looks at no more than this many neighbours: R of MAP@R is
#: capped here (``map_at_r_max_r`` in the result) for classes larger than it.
APPROXIMATE_MAX_R = 1000

#: With the IVF index, at most this many queries (a seeded random sample) are scored:
#: faiss's IVF scan measured 2 ms a query on 200,000 rows of 128 dimensions and 5.6 ms on
#: 400,000 of 256 (2 busy vCPUs), so all 400,000 queries of a 2M-sample set would take
#: over half an hour. 5,000 queries put P@1's standard error under 0.7 points.
APPROXIMATE_MAX_QUERIES = 5_000

#: Queries searched at once by faiss: its results (``block x k`` distances and ids) and the
#: checks on them are the memory a search needs besides the embeddings.
_FAISS_BLOCK = 2048

#: Cells probed per query by the IVF index, of about ``sqrt(candidates)`` cells.
IVF_NPROBE = 16

#: Elements (queries x candidates) of one block of the NumPy search: 8 bytes each, a few
#: arrays of that size at once.
_NUMPY_BLOCK_ELEMENTS = 2**25


def _faiss_module():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def neighbour_method(candidates: int, method: str = "auto") -> str:
    """Which search ranks ``candidates`` rows: ``"numpy"``, ``"flat"`` or ``"ivf"``.

    ``"auto"``: faiss's IVF index above :data:`APPROXIMATE_ABOVE` candidates (when faiss
    is installed), else the exact NumPy search. ``"flat"`` is faiss's exact search, its
    float32 rankings checked and, where float32 cannot tell the order, redone in float64:
    the same result as ``"numpy"``, but no faster with many near ties in the first R
    neighbours (MAP@R on 10,000 Fashion-MNIST pictures redid nearly every query). An
    explicit ``"flat"`` or ``"ivf"`` needs faiss (:func:`~gluon_triplet.optional.require`).
    """
    if method not in ("auto", "numpy", "flat", "ivf"):
        raise ValueError(f"method must be auto, numpy, flat or ivf, got {method!r}")
    if method == "auto":
        if candidates <= APPROXIMATE_ABOVE or _faiss_module() is None:
            return "numpy"
        return "ivf"
    if method != "numpy":
        from ..optional import require

        require("faiss", "the faiss neighbour search of the evaluation")
    return method


def _ivf_index(faiss, gx: np.ndarray, seed: int):
    """An IVF flat index of ``gx`` (float32), about sqrt(n) cells, trained on a sample."""
    n, d = gx.shape
    nlist = max(1, int(np.sqrt(n)))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    train = min(n, 40 * nlist)
    pick = np.sort(np.random.default_rng(seed).choice(n, train, replace=False))
    index.train(np.ascontiguousarray(gx[pick]))
    for start in range(0, n, 65536):
        index.add(np.ascontiguousarray(gx[start : start + 65536]))
    index.nprobe = min(IVF_NPROBE, nlist)
    return index, nlist, index.nprobe


def _beyond_float32(x: np.ndarray, name: str) -> bool:
    """Whether squared norms of ``x`` leave float32's range (raises when they leave
    float64's, as the NumPy search does)."""
    step = 65536
    rows = (x[s : s + step].astype(np.float64, copy=False) for s in range(0, len(x), step))
    return max(float(_row_sq_norms(r, name).max()) for r in rows) > 1e30


def _float32_rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _faiss_relevance(
    x: np.ndarray,
    codes: np.ndarray,
    queries: np.ndarray,
    depth: int,
    gallery: Optional[Tuple[np.ndarray, np.ndarray]],
    method: str,
    exact_rows,
    info: Dict[str, object],
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """:func:`_ranked_relevance`'s stream from a faiss search, in blocks of queries.

    ``flat``: exact. faiss ranks by float32 distances; a query's ranking is kept only when
    it provably equals the float64 one under the pessimistic tie rule: wherever two
    neighbours among the first ``depth + 1`` are within twice the float32 rounding bound
    (``(8 + 2 sqrt(D)) * eps32 * (|q|^2 + max |x|^2)``) their relevance must agree, and the
    ``depth``-th must be clear of the last one returned. The other queries (ties between a
    same-label and a wrong-label neighbour, a collapsed embedding) are ranked again by
    ``exact_rows(query_idx)``, the float64 NumPy search. ``ivf``: approximate, no check;
    a neighbour faiss did not find counts as not relevant.
    """
    faiss = _faiss_module()
    gx, gcodes = (x, codes) if gallery is None else gallery
    loo = gallery is None
    xb = _float32_rows(gx)
    xq = xb if loo else _float32_rows(x)
    n = len(xb)
    extra = max(16, depth // 8) if method == "flat" else 0  # spare ones for the check
    k = min(n, depth + extra + (1 if loo else 0))
    index = None
    if method == "ivf":
        index, nlist, nprobe = _ivf_index(faiss, xb, seed=0)
        info["neighbours"] = (
            f"approximate (IVF, nlist={nlist}, nprobe={nprobe}; {len(queries)} queries)"
        )
    eps = float(np.finfo(np.float32).eps)
    xn_max = float(np.einsum("ij,ij->i", xb, xb).max()) if method == "flat" else 0.0
    coef = (8.0 + 2.0 * np.sqrt(xb.shape[1])) * eps
    redone = 0
    for start in range(0, len(queries), _FAISS_BLOCK):
        q = queries[start : start + _FAISS_BLOCK]
        block = xq[q]
        if index is None:
            dist, ids = faiss.knn(block, xb, k)
        else:
            dist, ids = index.search(block, k)
        if loo:
            # The query itself goes last; the others keep faiss's order.
            own = ids == q[:, None]
            order = np.argsort(own, axis=1, kind="stable")
            ids = np.take_along_axis(ids, order, axis=1)[:, : k - 1]
            dist = np.take_along_axis(dist, order, axis=1)[:, : k - 1]
        found = ids >= 0
        rel = found & (gcodes[np.where(found, ids, 0)] == codes[q][:, None])
        if method == "flat":
            # Neighbours closer than the rounding bound form groups whose order float32
            # cannot tell; a group reaching into the first `depth` must be all relevant or
            # all not, and must end before the last neighbour returned.
            tol = 2.0 * coef * (np.einsum("ij,ij->i", block, block) + xn_max)
            near = np.diff(dist, axis=1) <= tol[:, None]
            group = np.zeros(dist.shape, dtype=np.int64)
            np.cumsum(~near, axis=1, out=group[:, 1:])
            reach = group[:, depth - 1 : depth]
            mixed = near & (rel[:, :-1] != rel[:, 1:]) & (group[:, :-1] <= reach)
            unsure = mixed.any(axis=1)
            if rel.shape[1] < (n - 1 if loo else n):  # candidates beyond those returned
                unsure |= group[:, -1] == reach[:, 0]
            pos = np.flatnonzero(unsure)
            redone += len(pos)
            done = 0
            for rq, rrel in exact_rows(q[pos]) if len(pos) else ():
                rel[pos[done : done + len(rq)], :depth] = rrel
                done += len(rq)
        yield q, rel[:, :depth]
    if redone:
        logger.debug("faiss search: %d of %d queries ranked again in float64", redone, len(queries))


# --------------------------------------------------------------------------- clustering


#: Above this many points, k-means clusters a seeded random sample of this many.
CLUSTERING_MAX_POINTS = 20_000

#: k-means is skipped when points x clusters x dimensions exceeds this: one Lloyd pass
#: costs about that many multiply-adds, and its k-means++ start about 2 + ln(k) passes
#: (10,000 x 500 x 128 = 0.64e9 took 8 s on a 2-vCPU VM).
CLUSTERING_MAX_WORK = 2_000_000_000

logger = logging.getLogger("gluon_triplet")


def _as_labelling(labels_true, labels_pred) -> Tuple[np.ndarray, np.ndarray]:
    a = _to_numpy(labels_true)
    b = _to_numpy(labels_pred)
    if a.ndim != 1 or b.shape != a.shape:
        raise ValueError(
            f"labels_true and labels_pred must be 1-D of equal length, got {a.shape}, {b.shape}"
        )
    if a.size == 0:
        raise ValueError("labels_true and labels_pred must be non-empty")
    return a, b


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information of two labellings (arithmetic-mean normalisation).

    scikit-learn's ``normalized_mutual_info_score``: ``MI(U, V) / ((H(U) + H(V)) / 2)``,
    natural logs. Two labellings that each put everything in one group score 1.0. Memory
    grows with the number of samples, not with classes x clusters (a sparse table).

    Parameters
    ----------
    labels_true, labels_pred : (N,) int or str

    Returns
    -------
    float in [0, 1]
    """
    from sklearn.metrics import normalized_mutual_info_score

    a, b = _as_labelling(labels_true, labels_pred)
    return float(min(1.0, max(0.0, normalized_mutual_info_score(a, b))))


def ami(labels_true, labels_pred) -> float:
    """Adjusted mutual information (arithmetic-mean normalisation): scikit-learn's
    ``adjusted_mutual_info_score``, ``(MI - E[MI]) / (mean(H(U), H(V)) - E[MI])``.

    0 for a labelling no better than chance, 1 for identical partitions; can be negative.
    20,000 labels in 10,000 classes take about 10 s and 150 MB.

    Parameters
    ----------
    labels_true, labels_pred : (N,) int or str

    Returns
    -------
    float
    """
    from sklearn.metrics import adjusted_mutual_info_score

    a, b = _as_labelling(labels_true, labels_pred)
    return float(adjusted_mutual_info_score(a, b))


def kmeans_clusters(emb, k: int, seed: int = 0) -> np.ndarray:
    """k-means cluster of each row (scikit-learn's ``KMeans``, k-means++ init, fixed seed).

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    k : int, 1 <= k <= N
    seed : int

    Returns
    -------
    (N,) int64 cluster ids in ``[0, k)``
    """
    from sklearn.cluster import KMeans

    x = _as_embedding(emb)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(x):
        raise ValueError(f"k must be an integer in [1, N={len(x)}], got {k!r}")
    model = KMeans(n_clusters=int(k), n_init=1, random_state=int(seed))
    return model.fit_predict(x).astype(np.int64)


def clustering_metrics(
    emb,
    labels,
    seed: int = 0,
    max_points: int = CLUSTERING_MAX_POINTS,
    max_work: float = CLUSTERING_MAX_WORK,
) -> Dict[str, object]:
    """NMI and AMI of k-means clusters against the labels, k = number of classes.

    As pytorch-metric-learning's AccuracyCalculator reports them. The k-means step is
    bounded: above ``max_points`` points it clusters a seeded random sample of that many
    (and says so), and it is skipped, with an INFO line, when points x classes x
    dimensions exceeds ``max_work`` (e.g. 20,000 points of 10,000 classes in 128
    dimensions: hours of k-means, and clusters of two points say little).

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    labels : (N,) int or str
    seed : int
        Seed of the k-means initialisation (and of the sample).
    max_points : int
    max_work : float

    Returns
    -------
    dict
        ``nmi`` and ``ami``; with ``clustering_points`` (the sample's size) when a
        sample was clustered; only ``clustering_skipped`` (the reason) when skipped.
    """
    x = _as_embedding(emb)
    codes, _ = _encode_labels(labels, x.shape[0])
    if not isinstance(max_points, (int, np.integer)) or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    out: Dict[str, object] = {}
    if len(x) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), int(max_points), replace=False))
        x, codes = x[pick], codes[pick]
        out["clustering_points"] = int(max_points)
    k = len(np.unique(codes))
    work = float(len(x)) * k * x.shape[1]
    if work > max_work:
        reason = (
            f"k-means with k={k} classes on {len(x)} points of {x.shape[1]} dimensions "
            f"({work:.3g} multiply-adds a pass) is above the limit of {max_work:.3g}"
        )
        logger.info("NMI/AMI skipped: %s", reason)
        return {"clustering_skipped": reason}
    clusters = kmeans_clusters(x, k, seed=seed)
    out.update(nmi=nmi(codes, clusters), ami=ami(codes, clusters))
    return out


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


# ----------------------------------------------------------------------------- summary


def evaluate_embeddings(
    emb,
    labels,
    triplets: Optional[Tuple[Iterable[int], Iterable[int], Iterable[int]]] = None,
    margin: float = 1.0,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = 1024,
    method: str = "auto",
    per_class: bool = False,
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """All per-epoch metrics of an embedding in one JSON-serialisable dict.

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    labels : (N,) array-like of int or str
    triplets : (anchor_idx, positive_idx, negative_idx), each (T,) int, optional
        Fixed evaluation triplets, e.g. from ``triplets.create_pairs``.
    margin : float
        The ``TripletLoss`` margin, for ``active_fraction``.
    ks : iterable of positive int
        Passed to :func:`retrieval_metrics`.
    chunk_size, method : int, str
        Passed to :func:`retrieval_metrics`.
    per_class : bool
        Also ``per_class_precision_at_1`` (see :func:`per_class_precision_at_1`), from the
        same search.
    class_names : sequence of str, optional
        Its keys, as in :func:`per_class_precision_at_1`.

    Returns
    -------
    dict of str -> float (``num_queries`` is int)
        Everything from :func:`retrieval_metrics`, plus ``embedding_norm`` (mean L2 norm of
        the rows) and, when ``triplets`` is given, ``triplet_accuracy`` (strict, see
        :func:`strict_triplet_accuracy`), ``active_fraction`` (see
        :func:`active_triplet_fraction`), ``mean_ap_dist``, ``mean_an_dist`` and the
        fractions of :func:`triplet_difficulty`.
    """
    ks = _as_ks(ks)
    x, codes, classes, num_relevant, queries, chunk_size = _retrieval_setup(emb, labels, chunk_size)
    result, hits = _retrieval(x, codes, classes, num_relevant, queries, chunk_size, ks, method)
    if per_class:
        result["per_class_precision_at_1"] = _per_class(hits, codes, classes, queries, class_names)
    norms = np.concatenate(
        [
            np.sqrt(_row_sq_norms(x[s : s + 65536].astype(np.float64)))
            for s in range(0, len(x), 65536)
        ]
    )
    result["embedding_norm"] = float(norms.mean())
    if triplets is not None:
        if len(triplets) != 3:
            raise ValueError(
                "triplets must be (anchor_idx, positive_idx, negative_idx), "
                f"got {len(triplets)} arrays"
            )
        ap, an = triplet_distances(x, *triplets)
        result["triplet_accuracy"] = strict_triplet_accuracy(ap, an)
        result["active_fraction"] = active_triplet_fraction(ap, an, margin)
        result["mean_ap_dist"] = float(ap.mean())
        result["mean_an_dist"] = float(an.mean())
        result.update(triplet_difficulty(ap, an, margin))
    return result
