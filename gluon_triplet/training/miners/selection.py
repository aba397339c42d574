"""Selection primitives the miners share, written once for ``F = mx.nd`` and ``mx.sym``:
searches in sorted rows and a fixed-size sample of a grouped list. Shapes are fixed by
the batch size, so a graph built on them keeps fixed shapes."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bisect_rows", "sample_ranks", "search_sorted"]


def bisect_rows(F, sorted_rows, queries, strict, shape, dtype, where, rows_of=None):
    """Vectorised binary search, one search per query, all at once.

    Parameters
    ----------
    F : mx.nd or mx.sym
    sorted_rows : (R, L) NDArray or Symbol
        Each row ascending (``inf`` allowed).
    queries : (R, Q), same dtype; or any shape with ``rows_of``
        Query ``[i, j]`` searches row ``i``.
    strict : bool
        True: count of entries ``<= query``, i.e. the index of the first entry
        ``> query`` (``bisect_right``). False: count of entries ``< query``
        (``bisect_left``).
    shape : (int, int)
        ``(R, L)``: a symbol does not know its shape.
    dtype : str
        Of ``sorted_rows``.
    where : dict
        See :func:`.base._where`.
    rows_of : same shape as ``queries``, dtype of ``sorted_rows``, optional
        The row each query searches (then the queries need not form an ``(R, Q)`` grid:
        only the searches needed are made).

    Returns
    -------
    Indices in ``[0, L]``, shaped as ``queries``, dtype of ``sorted_rows``.
    """
    rows, length = shape
    steps = max(1, math.ceil(math.log2(length + 1)))
    # Pad each row with +inf to 2**steps entries: every probe below is then in range,
    # so the loop needs no clipping, and inf never counts as <= a finite query.
    pad = F.full((rows, 2**steps - length), np.inf, dtype=dtype, **where)
    flat = F.concat(sorted_rows, pad, dim=1).reshape((-1,))
    if rows_of is None:
        rows_of = F.broadcast_like(F.arange(rows, dtype=dtype, **where).reshape((-1, 1)), queries)
    base = rows_of * 2**steps
    # Branchless search: try steps 2**(k-1), ..., 1 and keep each one whose last probed
    # entry still satisfies the test. A fixed number of rounds: no host sync.
    idx = base
    for k in reversed(range(steps)):
        probe = F.take(flat, idx + (2**k - 1))
        ok = (probe <= queries) if strict else (probe < queries)
        idx = idx + ok * 2**k
    return idx - base


def search_sorted(F, flat_rows, queries, row_starts, length, dtype, where):
    """For each query, the count of entries ``<= query`` in its row (``bisect_right``).

    The same result as :func:`bisect_rows` with ``strict=True``, from two rounds of a
    ``w``-ary search (``w = isqrt(L) + 1``, so ``w * w > L``) instead of ``log2(L)``
    binary rounds: fewer operations in a step graph.

    Parameters
    ----------
    F : mx.nd or mx.sym
    flat_rows : (R * L,)
        ``R`` rows of ``L`` entries, each row ascending (``inf`` allowed), flattened.
    queries : (Q,)
    row_starts : (Q,), dtype of the rows
        ``L`` times the row each query searches.
    length : int
        ``L``.
    dtype : str
        Of the rows.
    where : dict
        See :func:`.base._where`.

    Returns
    -------
    (Q,) counts in ``[0, L]``, dtype of the rows.
    """
    width = math.isqrt(length) + 1
    start = row_starts.reshape((-1, 1))
    query = queries.reshape((-1, 1))
    step = F.arange(width, dtype=dtype, **where).reshape((1, -1))
    # Round 1 probes the last entry of each block of `width` entries (positions past the
    # row read its last entry). The hits are a prefix (sorted rows): their count names
    # the block where the first entry > query lies, or all of them hit (all <= query).
    last = F.minimum(step * width + (width - 1), length - 1)
    hit = F.broadcast_lesser_equal(F.take(flat_rows, F.broadcast_add(start, last)), query)
    block = F.sum(hit, axis=1, keepdims=True) * width
    # Round 2 counts the hits inside that block; clipped probes re-read the last entry,
    # which counts more than once only when every entry is <= query: hence the minimum.
    inside = F.minimum(F.broadcast_add(block, step), length - 1)
    hit = F.broadcast_lesser_equal(F.take(flat_rows, F.broadcast_add(start, inside)), query)
    return F.minimum(F.broadcast_add(block, F.sum(hit, axis=1, keepdims=True)), length).reshape(
        (-1,)
    )


def sample_ranks(F, count, m, groups, where):
    """A fixed-size sample of the ``T = sum(count)`` items of a grouped list.

    Group ``g`` holds ``count[g]`` items; items are ranked group by group. Returns ``m``
    rows: all ``T`` ranks in order when ``T <= m`` (then padding), else ``m`` distinct
    ranks by systematic sampling, ``floor((i + u) * T / m)`` for ``i < m`` with one
    uniform ``u`` from MXNet's RNG, which includes every item with probability ``m / T``.

    Parameters
    ----------
    F : mx.nd or mx.sym
    count : (G,) float64
        Non-negative integers.
    m : int
    groups : int
        ``G``.
    where : dict
        See :func:`.base._where`.

    Returns
    -------
    group : (m,) NDArray float64
        Group of each row, in ``[0, G)`` (meaningless on padding rows).
    offset : (m,) NDArray float64
        Position of the row's item inside its group.
    weight : (m,) NDArray float64
        1 for a sampled item, 0 for padding.
    """
    cum = F.cumsum(count)
    total = F.slice_axis(cum, axis=0, begin=-1, end=None)
    size = F.full((1,), m, dtype="float64", **where)
    rank = F.arange(m, dtype="float64", **where)
    u = F.random.uniform(shape=(1,), dtype="float64", **where)
    spread = F.floor(F.broadcast_div(F.broadcast_mul(F.broadcast_add(rank, u), total), size))
    take_all = F.broadcast_like(F.broadcast_lesser_equal(total, size), rank)
    rank = F.where(take_all, rank, spread)
    weight = F.broadcast_lesser(rank, total)
    # Group of a rank: the first group whose cumulative count exceeds it.
    group = bisect_rows(
        F, cum.reshape((1, -1)), rank.reshape((1, -1)), True, (1, groups), "float64", where
    ).reshape((-1,))
    group = F.minimum(group, groups - 1)
    offset = rank - (F.take(cum, group) - F.take(count, group))
    return group, offset, weight
