"""Distance-weighted sampling: per positive pair, a negative drawn with probability
``1 / q(d)``, among those with a nonzero loss."""

from __future__ import annotations

import numpy as np
from mxnet import nd

from .base import Miner, _check_batch, _check_size
from .selection import sample_ranks

__all__ = ["DistanceWeightedMiner", "distance_weights"]


def distance_weights(dist, dim, cutoff=0.5):
    """Log of the distance-weighted sampling weight ``1 / q(d)`` of Wu et al. (2017).

    Between points drawn uniformly on the unit sphere in ``dim`` dimensions, the distance
    ``d`` has density ``q(d) ∝ d^(dim-2) (1 - d^2/4)^((dim-3)/2)``; sampling negatives
    with probability ``∝ 1 / q(d)`` spreads them over all distances instead of piling
    up near ``sqrt(2)``. ``d`` is clipped below at ``cutoff`` (the weights of near
    negatives would otherwise explode, and their gradients are noisy) and ``1 - d^2/4`` at
    ``1e-6`` (distances of un-normalised embeddings can exceed 2).

    Parameters
    ----------
    dist : (...) NDArray float32
        Euclidean (not squared) distances.
    dim : int
        Embedding dimension ``n`` (>= 2).
    cutoff : float
        Lower clip of ``d``, > 0.

    Returns
    -------
    (...) NDArray float32
        ``-(dim-2) log d - ((dim-3)/2) log(1 - d^2/4)`` of the clipped ``d``; an
        additive constant is free (only ratios matter).

    Raises
    ------
    ValueError
        ``dim < 2`` or ``cutoff <= 0``.
    """
    if int(dim) < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    d = nd.maximum(dist, float(cutoff))
    inside = nd.maximum(1.0 - 0.25 * d * d, 1e-6)
    return -(dim - 2.0) * nd.log(d) - ((dim - 3.0) / 2.0) * nd.log(inside)


class DistanceWeightedMiner(Miner):
    """Distance-weighted sampling (Wu et al., "Sampling Matters", 2017), one triplet per pair.

    For each positive pair ``(a, p)`` (``p != a``, same label) a negative ``n`` is drawn
    from ``a``'s negatives with probability proportional to ``1 / q(d(a, n))`` (see
    :func:`distance_weights`, ``d`` the Euclidean distance, ``n`` the embedding dimension),
    restricted to the negatives that give the pair a nonzero triplet loss:
    ``d(a, n) < d(a, p) + margin`` in the miner's distance, the one the loss uses
    (``squared`` by default, as ``TripletLoss``; or ``euclidean``). A pair with no such
    negative gets weight 0: its loss would be 0 whichever negative it got. The weights
    assume L2-normalised embeddings (distances in ``[0, 2]``); others are clipped.

    The draws use MXNet's RNG (``mx.random.seed``; the trainer reseeds it every epoch),
    all pairs at once with the Gumbel-max trick over an ``(M, B)`` matrix of log weights:
    no per-anchor loop, no copy to the host.

    Rows returned, as in :class:`SemiHardMiner`: ``max_pairs=None`` gives ``M = B * B``
    (row ``a * B + p``; padding ``(a, a, a)``, weight 0); ``max_pairs=m`` gives ``M = m``
    (every valid pair when there are at most ``m``, else ``m`` of them by systematic
    sampling; padding ``(0, 0, 0)``).

    Parameters
    ----------
    margin : float
        The ``TripletLoss`` margin, for the nonzero-loss mask.
    metric : {"squared", "euclidean"}
        The distance of the nonzero-loss mask (the loss's); the weights always use the
        Euclidean distance. ``"cosine"`` is refused.
    cutoff : float
        Lower clip of the distance in the weights (0.5 as in the paper).
    max_pairs : int, optional
        ``M`` in compact mode.
    """

    def __init__(self, margin=1.0, metric="squared", cutoff=0.5, max_pairs=None):
        super().__init__(margin=margin, metric=metric)
        if self.metric == "cosine":  # metric may be a name or a Distance
            raise ValueError(
                "distance-weighted sampling is defined on Euclidean distances; "
                "use metric 'squared' or 'euclidean'"
            )
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        self.cutoff = float(cutoff)
        self.max_pairs = _check_size("max_pairs", max_pairs)

    def __repr__(self):
        return f"{super().__repr__()[:-1]}, cutoff={self.cutoff}, max_pairs={self.max_pairs})"

    def num_triplets(self, batch_size):
        """``M`` for a batch of ``batch_size`` rows."""
        return self.max_pairs if self.max_pairs is not None else int(batch_size) ** 2

    def _select(self, F, dist, pos, neg, b, where, emb):
        _check_batch(self, b)
        m = self.num_triplets(b)
        sq = dist if self.metric == "squared" else dist * dist
        # The embedding dimension n as a (1, 1) array: a symbol has no shape to read it from.
        n = F.sum(F.ones_like(F.slice_axis(emb, axis=0, begin=0, end=1)), axis=1, keepdims=True)
        n = F.maximum(n, 2.0)
        d = F.maximum(F.sqrt(sq), self.cutoff)
        inside = F.maximum(1.0 - 0.25 * d * d, 1e-6)
        # distance_weights(), with n an array.
        log_w = F.broadcast_mul(F.log(d), -(n - 2.0)) - F.broadcast_mul(
            F.log(inside), (n - 3.0) / 2.0
        )
        valid = F.broadcast_mul(pos, F.sum(neg, axis=1, keepdims=True) > 0).reshape((-1,))
        if self.max_pairs is None:
            pair = F.arange(b * b, **where)
            keep = valid
        else:
            pair, _, keep = sample_ranks(F, F.cast(valid, "float64"), m, b * b, where)
            pair = F.cast(F.where(keep, pair, F.zeros_like(pair)), "float32")
            keep = F.cast(keep, "float32")
        anchor = F.floor(pair / b)
        positive = pair - anchor * b
        # (M, B): each row is one pair's candidate negatives, those with a nonzero loss,
        # in the loss's own distance (squared, or Euclidean: the loss shares the miner's).
        d_ap = F.take(dist.reshape((-1,)), pair).reshape((-1, 1))
        cand = F.take(neg, anchor) * F.broadcast_lesser(F.take(dist, anchor), d_ap + self.margin)
        # Gumbel-max: argmax of log w + Gumbel noise is a draw with probability w / sum(w)
        # over the candidates, for any spread of log w (no exp to overflow, no cumsum).
        # u is kept inside (0, 1) so the noise stays finite; the clipped tails weigh 1e-7.
        u = F.random.uniform(1e-7, 1 - 1e-7, shape=(m, b), dtype="float32", **where)
        score = F.take(log_w, anchor) - F.log(-F.log(u))
        score = F.where(cand, score, F.full((m, b), -np.inf, **where))
        negative = F.argmax(score, axis=1)
        weight = keep * F.max(cand, axis=1)
        fill = anchor if self.max_pairs is None else F.zeros_like(anchor)
        return (
            F.where(weight, anchor, fill),
            F.where(weight, positive, fill),
            F.where(weight, negative, fill),
            weight,
        )
