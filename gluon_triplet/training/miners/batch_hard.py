"""Batch-hard mining: the farthest positive and the nearest negative of each anchor."""

from __future__ import annotations

import numpy as np

from .base import Miner

__all__ = ["BatchHardMiner"]


class BatchHardMiner(Miner):
    """Batch-hard mining (Hermans et al., 2017): the hardest positive and negative per anchor.

    ``M = B``: row ``i`` is anchor ``i`` with its farthest positive (largest ``d(a, p)``,
    ``p != a``, same label) and its nearest negative (smallest ``d(a, n)``, other label).
    Ties: whichever index ``argmax``/``argmin`` returns (the lowest on CPU). Anchors with no
    positive or no negative in the batch get weight 0 and the padding triplet ``(i, i, i)``.
    ``margin`` is not used for selection.
    """

    def num_triplets(self, batch_size):
        """``M = B``."""
        return int(batch_size)

    def _select(self, F, dist, pos, neg, b, where, emb):
        far = F.where(pos, dist, F.full((b, b), -1.0, **where))
        near = F.where(neg, dist, F.full((b, b), np.inf, **where))
        anchor = F.arange(b, **where)
        weight = (F.sum(pos, axis=1) > 0) * (F.sum(neg, axis=1) > 0)
        positive = F.where(weight, F.argmax(far, axis=1), anchor)
        negative = F.where(weight, F.argmin(near, axis=1), anchor)
        return anchor, positive, negative, weight
