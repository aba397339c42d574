"""Semi-hard mining: per positive pair, the nearest negative farther than the positive
and inside the margin; its exact float64 sort keys and the P x K pair listing."""

from __future__ import annotations

import numpy as np
from mxnet import nd

from .base import Miner, _check_batch, _check_size
from .selection import sample_ranks, search_sorted

__all__ = ["SemiHardMiner"]


def _block_pairs(F, b, k, where):
    """Every ordered pair of distinct rows inside each block of ``k`` consecutive rows.

    Returns ``anchor, positive``, each ``(b * (k - 1),)`` float64, in ``(a, p)`` order
    (anchor ascending, then positive ascending): the order in which the other path
    lists valid pairs.
    """
    rank = F.arange(b * (k - 1), dtype="float64", **where)
    anchor = F.floor(rank / (k - 1))
    j = rank - anchor * (k - 1)  # the anchor's j-th other row of its block
    start = F.floor(anchor / k) * k
    # broadcast_add, not +: elemwise_add dispatches to MKL-DNN's sum, costlier here.
    return anchor, F.broadcast_add(F.broadcast_add(start, j), j >= anchor - start)


# Sort keys for semi-hard mining: a float32 distance d >= 0 in column n (< 2**11 = the
# largest batch) becomes the float64 key (d + 2**-1000) * (1 + n * 2**-40). Exactly:
# - d + 2**-1000 is d itself for d > 0 (d >= 2**-149, so 2**-1000 is below half its
#   float64 ulp) and 2**-1000 for d = 0; 1 + n * 2**-40 needs 41 bits: exact.
# - The product has at most 24 + 41 bits, so it rounds by at most 2**-53 of itself,
#   while one column step adds (d + 2**-1000) * 2**-40: keys of equal d grow with n.
# - Every key of d lies in [d, d * (1 + 2**-29)), below the next float32 above d
#   (>= d * (1 + 2**-24); >= 2**-149 above 0): keys of different d keep their order.
# So an ascending sort of the keys lists a row's distances ascending, ties by column,
# and a plain sort of values replaces topk (whose order among ties is unspecified). The
# column comes back from the key (_key_column), a distance d's place from _key_query.
_KEY_FLOOR = 2.0**-1000
_KEY_STEP = 2.0**-40


def _tie_keys(F, dist, neg, b, where):
    """``(B, B)`` float64 keys of the negatives' distances (``+inf`` elsewhere): ascending
    order is distance ascending, ties by column (see above)."""
    column = F.arange(b, dtype="float64", **where) * _KEY_STEP + 1.0
    keys = F.broadcast_mul(F.cast(dist, "float64") + _KEY_FLOOR, column.reshape((1, -1)))
    return F.where(neg, keys, F.full((b, b), np.inf, dtype="float64", **where))


def _key_query(F, d):
    """float64 queries above every key of a distance ``<= d`` (float32, >= 0) and below
    every key of a distance ``> d``: keys ``<= query`` count the distances ``<= d``."""
    return (F.cast(d, "float64") + _KEY_FLOOR) * (1.0 + 2.0**-28)


def _key_limit(F, d):
    """float64 limits with ``key < limit`` exactly when the key's distance is ``< d``."""
    return F.cast(d, "float64") + _KEY_FLOOR


def _key_column(F, key):
    """The column a key was made for (float64; NaN for ``inf``)."""
    # The nearest float32 of a key is its distance (keys sit within 2**-29 above it).
    base = F.cast(F.cast(key, "float32"), "float64") + _KEY_FLOOR
    return F.round((key - base) / base * 2.0**40)


def _semi_hard_negatives(F, keys, d_ap, start, n_neg, b, margin, where):
    """Column of each pair's semi-hard negative, or of its hardest when none is.

    Parameters
    ----------
    keys : (B * B,) float64
        :func:`_tie_keys` sorted along each row, flattened.
    d_ap : (Q,) float32
        Each pair's distance anchor - positive.
    start : (Q,) float64
        ``B`` times each pair's anchor.
    n_neg : (Q,) float64 or number
        The anchor's negatives.
    b : int
    margin : float
    where : dict

    Returns
    -------
    (Q,) float64
        NaN for an anchor with no negative.
    """
    # The first negative strictly farther than the positive...
    first = search_sorted(F, keys, _key_query(F, d_ap), start, b, "float64", where)
    slot = F.broadcast_add(start, F.minimum(first, b - 1))
    # ...is semi-hard if it exists and is inside the margin; else the hardest, the
    # first of the row.
    inside = F.take(keys, slot) < _key_limit(F, d_ap + margin)
    semi = (first < n_neg) * inside
    return _key_column(F, F.take(keys, F.where(semi, slot, start)))


class SemiHardMiner(Miner):
    """Semi-hard mining (FaceNet, Schroff et al., 2015), one triplet per positive pair.

    A pair ``(a, p)`` is valid when ``p != a`` has ``a``'s label and the batch holds at
    least one negative for ``a``. Its negative is the *nearest semi-hard* one, the
    smallest ``d(a, n)`` with ``d(a, p) < d(a, n) < d(a, p) + margin``, or, when no
    negative is semi-hard, the hardest negative (smallest ``d(a, n)``). Among negatives
    at equal distance the lowest index is taken.

    Rows returned, for a batch of ``B`` (a P x K batch has ``B * (K - 1)`` valid pairs):

    * ``max_pairs=None``: ``M = B * B``, row ``a * B + p`` is the pair ``(a, p)``, weight
      1 when valid; other rows are padding ``(a, a, a)`` with weight 0.
    * ``max_pairs=m``: ``M = m``. The valid pairs, in ``(a, p)`` order, fill the first
      rows when there are at most ``m`` (padding ``(0, 0, 0)`` after them); beyond that,
      ``m`` distinct ones are drawn, each with probability ``m / (valid pairs)``
      (systematic sampling as in :class:`BatchAllMiner`).

    ``M = B * B`` makes the loss gather ``3 B^2`` embedding rows: pass ``max_pairs``
    (e.g. ``16 * B``) for anything but small batches.

    The search is a sort of each anchor's negatives (by distance, then index), then, for
    each of the ``M`` pairs only, a search in its anchor's row: ``O(B^2 log B + M sqrt B)``
    work, no ``(B, B, B)`` tensor. With ``block=K`` (:meth:`Miner.mine`) the pairs of a
    P x K batch are listed from its layout instead of found among ``B * B`` flags.
    Batches are limited to 2048 rows.

    Parameters
    ----------
    margin, metric
        As in :class:`Miner`.
    max_pairs : int, optional
        ``M`` in compact mode; ``None`` (default) returns one row per ``(a, p)``.
    """

    def __init__(self, margin=1.0, metric="squared", max_pairs=None):
        super().__init__(margin=margin, metric=metric)
        self.max_pairs = _check_size("max_pairs", max_pairs)

    def __repr__(self):
        return f"{super().__repr__()[:-1]}, max_pairs={self.max_pairs})"

    def num_triplets(self, batch_size):
        """``M`` for a batch of ``batch_size`` rows."""
        return self.max_pairs if self.max_pairs is not None else int(batch_size) ** 2

    def uses_blocks(self, batch_size, block):
        """True for whole blocks of ``block >= 2`` rows when every pair fits in
        ``max_pairs``: the pairs are then known from the layout, not searched for."""
        if block is None or self.max_pairs is None:
            return False
        b, k = int(batch_size), int(block)
        return k >= 2 and b % k == 0 and b // k >= 2 and b * (k - 1) <= self.max_pairs

    def _select_blocks(self, F, emb, labels, b, k, where):
        # The other path's valid pairs are exactly the blocks' pairs, all kept (at most
        # max_pairs) in the same order, and every anchor has b - k negatives: list them
        # instead of ranking B * B flags and counting. The rest is the other path's
        # arithmetic, so the rows are equal to the bit.
        _check_batch(self, b)
        dtype = emb.dtype if F is nd else "float32"
        # Only off-diagonal distances are read (pairs and negatives).
        dist = self.distance._pairwise(F, emb, b, where, dtype, diagonal=False)
        neg = F.broadcast_not_equal(labels.reshape((-1, 1)), labels.reshape((1, -1)))
        keys = F.sort(_tie_keys(F, dist, neg, b, where), axis=1).reshape((-1,))
        anchor, positive = _block_pairs(F, b, k, where)
        start = anchor * b
        d_ap = F.take(dist.reshape((-1,)), F.broadcast_add(start, positive))
        negative = _semi_hard_negatives(F, keys, d_ap, start, b - k, b, self.margin, where)
        rows = [anchor, positive, negative, F.ones_like(d_ap)]
        padding = self.max_pairs - b * (k - 1)
        if padding:
            rows = [
                F.concat(x, F.zeros((padding,), dtype=t, **where), dim=0)
                for x, t in zip(rows, ("float64", "float64", "float64", "float32"))
            ]
        return rows

    def _select(self, F, dist, pos, neg, b, where, emb):
        _check_batch(self, b)
        keys = F.sort(_tie_keys(F, dist, neg, b, where), axis=1).reshape((-1,))
        n_neg = F.sum(neg, axis=1, keepdims=True)  # (B, 1)
        valid = F.cast(F.broadcast_mul(pos, n_neg > 0).reshape((-1,)), "float64")
        # The pairs first, then a negative for each of them only (not for all B * B).
        if self.max_pairs is None:
            pair, weight = F.arange(b * b, dtype="float64", **where), valid
        else:
            pair, _, weight = sample_ranks(F, valid, self.max_pairs, b * b, where)
        anchor = F.floor(pair / b)
        start = anchor * b
        d_ap = F.take(dist.reshape((-1,)), pair)
        n_neg = F.take(F.cast(n_neg, "float64").reshape((-1,)), anchor)
        negative = _semi_hard_negatives(F, keys, d_ap, start, n_neg, b, self.margin, where)
        fill = anchor if self.max_pairs is None else F.zeros_like(pair)
        return (
            F.where(weight, anchor, fill),
            F.where(weight, pair - start, fill),
            F.where(weight, negative, fill),
            weight,
        )
