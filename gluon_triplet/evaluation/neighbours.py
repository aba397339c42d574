"""Neighbours of many queries by faiss: exact (checked against float64) or approximate
(an IVF index) above :data:`APPROXIMATE_ABOVE` candidates."""

from __future__ import annotations

import logging
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from .arrays import _row_sq_norms

__all__ = [
    "APPROXIMATE_ABOVE",
    "APPROXIMATE_MAX_QUERIES",
    "APPROXIMATE_MAX_R",
    "IVF_NPROBE",
    "neighbour_method",
]

logger = logging.getLogger("gluon_triplet")

#: Above this many candidates a query ranks, neighbours come from a faiss IVF index:
#: approximate, and said so in the result (``neighbours``). At or below it (or without
#: faiss), from the exact float64 NumPy search in blocks of queries.
APPROXIMATE_ABOVE = 50_000

#: With the IVF index a query looks at no more than this many neighbours: R of MAP@R is
#: capped here (``map_at_r_max_r`` in the result) for classes larger than it.
APPROXIMATE_MAX_R = 1000

#: With the IVF index, at most this many queries (a seeded random sample) are scored
#: (P@1's standard error then stays under 0.7 points).
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
    """Which search ranks ``candidates`` rows: ``"numpy"``, ``"float32"``, ``"flat"`` or
    ``"ivf"``.

    ``"auto"``: faiss's IVF index above :data:`APPROXIMATE_ABOVE` candidates (when faiss
    is installed), else the exact NumPy search. ``"flat"`` is faiss's exact search, its
    float32 rankings checked and, where float32 cannot tell the order, redone in float64:
    the same result as ``"numpy"``, but no faster with many near ties in the first R
    neighbours (MAP@R on 10,000 Fashion-MNIST pictures redid nearly every query). An
    explicit ``"flat"`` or ``"ivf"`` needs faiss (:func:`~gluon_triplet.optional.require`).
    ``"float32"`` is the NumPy search on float32 distances (a float32 GEMM, about twice as
    fast on wide rows): exact on those distances, which may order near ties differently
    from float64; only when asked for.
    """
    if method not in ("auto", "numpy", "float32", "flat", "ivf"):
        raise ValueError(f"method must be auto, numpy, float32, flat or ivf, got {method!r}")
    if method == "auto":
        if candidates <= APPROXIMATE_ABOVE or _faiss_module() is None:
            return "numpy"
        return "ivf"
    if method in ("flat", "ivf"):
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
