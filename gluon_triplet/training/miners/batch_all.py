"""Batch-all mining: a fixed-size, unbiased sample of every active valid triplet."""

from __future__ import annotations

import numpy as np

from .base import Miner, _check_batch, _check_size
from .selection import bisect_rows, sample_ranks

__all__ = ["BatchAllMiner"]


def _sorted_negatives(F, dist, neg, b, where):
    """Per anchor, negatives' distances ascending (non-negatives last, as ``inf``)."""
    masked = F.where(neg, dist, F.full((b, b), np.inf, **where))
    values, order = F.topk(masked, axis=1, k=b, ret_typ="both", is_ascend=True)
    return values, order


class BatchAllMiner(Miner):
    """Batch-all mining: a fixed-size sample of all *active* valid triplets.

    A triplet ``(a, p, n)`` is valid when ``p != a`` shares ``a``'s label and ``n`` does
    not, and active when its loss is positive: ``d(a, p) - d(a, n) + margin > 0``. With
    ``T`` active valid triplets in the batch, :meth:`mine` returns ``M = max_triplets``
    rows (default ``4 * B``):

    * ``T <= M``: all ``T`` of them, in the first ``T`` rows (ordered by anchor, then
      positive, then negatives nearest first), weight 1; the other ``M - T`` rows are
      padding ``(0, 0, 0)`` with weight 0.
    * ``T > M``: ``M`` distinct ones, weight 1 each, drawn by systematic sampling over
      that order (ranks ``floor((i + u) * T / M)``, one uniform ``u`` from MXNet's RNG):
      every active triplet is included with the same probability ``M / T``, so the mean
      loss over the sample estimates the batch-all mean without bias, and every
      ``(a, p)`` pair keeps its share of the sample.

    The ``B^3`` triplets are never materialised: the active negatives of a pair ``(a, p)``
    are a prefix of ``a``'s negatives sorted by distance, so the count per pair comes from
    a binary search and a sampled rank maps back to ``(a, p, n)`` with another one.
    Batches are limited to 2048 rows.

    Parameters
    ----------
    margin, metric
        As in :class:`Miner`.
    max_triplets : int, optional
        ``M``; default ``4 * B`` (each gathered row costs loss and gradient work).
    """

    def __init__(self, margin=1.0, metric="squared", max_triplets=None):
        super().__init__(margin=margin, metric=metric)
        self.max_triplets = _check_size("max_triplets", max_triplets)

    def __repr__(self):
        return f"{super().__repr__()[:-1]}, max_triplets={self.max_triplets})"

    def num_triplets(self, batch_size):
        """``M`` for a batch of ``batch_size`` rows."""
        return self.max_triplets if self.max_triplets is not None else 4 * int(batch_size)

    def _select(self, F, dist, pos, neg, b, where, emb):
        _check_batch(self, b)
        values, order = _sorted_negatives(F, dist, neg, b, where)
        # Active negatives of (a, p): those with d(a, n) < d(a, p) + margin, a prefix.
        count = bisect_rows(F, values, dist + self.margin, False, (b, b), "float32", where) * pos
        # float64: cumulative counts reach B^3 / 4, past float32's exact integers.
        count = F.cast(count.reshape((-1,)), "float64")
        pair, offset, weight = sample_ranks(F, count, self.num_triplets(b), b * b, where)
        anchor = F.floor(pair / b)
        slot = anchor * b + F.clip(offset, 0, b - 1)
        negative = F.cast(F.take(order.reshape((-1,)), slot), "float64")
        zero = F.zeros_like(pair)
        return (
            F.where(weight, anchor, zero),
            F.where(weight, pair - anchor * b, zero),
            F.where(weight, negative, zero),
            weight,
        )
