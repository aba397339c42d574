"""Online triplet mining: choose triplets inside a batch from one forward pass.

The batch goes through the net once; a miner reads the ``(B, D)`` embeddings and the
``(B,)`` labels and returns *indices* of anchor, positive and negative rows plus a 0/1
weight per triplet. :func:`mined_loss` gathers those rows and applies
``gluon.loss.TripletLoss``. As in pytorch-metric-learning, miners only mine: the loss
stays a separate, ordinary Gluon loss.

Everything runs on the embeddings' context with NDArray operations (no per-anchor Python
loop, no copy to the host), and every miner returns arrays whose length ``M`` depends
only on the batch size ``B``, so a training loop built around them keeps fixed shapes.
The selection is written once for ``mx.nd`` and ``mx.sym``: :meth:`Miner.mine` runs it
imperatively, :meth:`Miner.select` inside a hybridized graph (the trainer's step, where
its small operations then cost no Python call each).

Examples
--------
>>> miner = get_miner("batch-hard", margin=1.0)
>>> loss_fn = gluon.loss.TripletLoss(margin=1.0)
>>> with autograd.record():
...     emb = net(x)                                   # (B, D)
...     a, p, n, w = miner.mine(emb, labels)           # labels: (B,) NDArray
...     loss = mined_loss(loss_fn, emb, a, p, n, w)    # scalar: mean over the selected
>>> loss.backward()
>>> trainer.step(1)                                    # the loss is already a mean
"""

from __future__ import annotations

import math

import numpy as np
from mxnet import autograd, nd

from .distances import METRICS, _check_embeddings, get_distance, pairwise_distances

__all__ = [
    "METRICS",
    "MINERS",
    "BatchAllMiner",
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "Miner",
    "SemiHardMiner",
    "distance_weights",
    "get_miner",
    "mined_loss",
    "pairwise_distances",
]

# Index arithmetic in the (B, <= 2B) searches is float32: exact while B * 2B < 2**24.
_MAX_BATCH = 2048


def _labels_like(labels, emb):
    """``(B,)`` labels as NDArray on ``emb``'s context (validated)."""
    b = emb.shape[0]
    if not isinstance(labels, nd.NDArray):
        labels = nd.array(np.asarray(labels), ctx=emb.context)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape((-1,))
    if labels.shape != (b,):
        raise ValueError(
            f"labels must have shape (B,) = ({b},) to match embeddings {emb.shape}, "
            f"got {labels.shape}"
        )
    return labels.as_in_context(emb.context)


def _where(F, like):
    """Keyword arguments placing a new array beside ``like``: an NDArray needs its
    context; a symbol's new arrays go where the graph runs."""
    return {"ctx": like.context} if F is nd else {}


def _masks(F, labels, b, where):
    """Positive (same label, not the anchor) and negative ``(B, B)`` float32 masks."""
    same = F.broadcast_equal(labels.reshape((-1, 1)), labels.reshape((1, -1)))
    same = F.cast(same, "float32")
    pos = same * (1 - F.eye(b, **where))
    neg = 1 - same
    return pos, neg


def _bisect(F, sorted_rows, queries, strict, shape, dtype, where, rows_of=None):
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
        See :func:`_where`.
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


def _search_sorted(F, flat_rows, queries, row_starts, length, dtype, where):
    """For each query, the count of entries ``<= query`` in its row (``bisect_right``).

    The same result as :func:`_bisect` with ``strict=True``, from two rounds of a
    ``w``-ary search (``w = isqrt(L) + 1``, so ``w * w > L``) instead of ``log2(L)``
    binary rounds. Inside a step graph every operation costs an engine push and often an
    OpenMP fork and join, which on a loaded 2-core machine dominates small arrays: this
    search has 2 gathers and 2 sums, the binary one 8 gathers and 40 operations.

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
        See :func:`_where`.

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


def _sorted_negatives(F, dist, neg, b, where):
    """Per anchor, negatives' distances ascending (non-negatives last, as ``inf``)."""
    masked = F.where(neg, dist, F.full((b, b), np.inf, **where))
    values, order = F.topk(masked, axis=1, k=b, ret_typ="both", is_ascend=True)
    return values, order


# Sort keys for semi-hard mining: a float32 distance d >= 0 in column n (< 2**11 = the
# largest batch) becomes the float64 key (d + 2**-1000) * (1 + n * 2**-40). Exactly:
# - d + 2**-1000 is d itself for d > 0 (d >= 2**-149, so 2**-1000 is below half its
#   float64 ulp) and 2**-1000 for d = 0; 1 + n * 2**-40 needs 41 bits: exact.
# - The product has at most 24 + 41 bits, so it rounds by at most 2**-53 of itself,
#   while one column step adds (d + 2**-1000) * 2**-40: keys of equal d grow with n.
# - Every key of d lies in [d, d * (1 + 2**-29)), below the next float32 above d
#   (>= d * (1 + 2**-24); >= 2**-149 above 0): keys of different d keep their order.
# So an ascending sort of the keys lists a row's distances ascending, ties by column,
# and a plain sort of values replaces topk (whose index output costs about as much as
# the sort itself on the CPU, and whose order among ties is unspecified). The column
# comes back from the key (_key_column), a distance d's place from _key_query.
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
    first = _search_sorted(F, keys, _key_query(F, d_ap), start, b, "float64", where)
    slot = F.broadcast_add(start, F.minimum(first, b - 1))
    # ...is semi-hard if it exists and is inside the margin; else the hardest, the
    # first of the row.
    inside = F.take(keys, slot) < _key_limit(F, d_ap + margin)
    semi = (first < n_neg) * inside
    return _key_column(F, F.take(keys, F.where(semi, slot, start)))


class Miner:
    """Base class: selects triplets from one batch of embeddings.

    Subclasses implement :meth:`_select`, written once for ``F = mx.nd`` and ``mx.sym``:
    :meth:`mine` validates NDArray inputs and selects without recording for autograd;
    :meth:`select` is the same selection inside a hybridized graph (the trainer's step,
    :class:`~gluon_triplet.training.batching.MinedStep`), where it costs no Python per operation.

    Parameters
    ----------
    margin : float
        The ``TripletLoss`` margin (used by miners that look at the loss).
    metric : {"squared", "euclidean", "cosine"} or Distance
        Distance used for *selection*; train with the loss of the same distance
        (:func:`~gluon_triplet.training.losses.triplet_loss`) so that "active" and "semi-hard"
        mean exactly what the loss sees.
    """

    def __init__(self, margin=1.0, metric="squared"):
        self.distance = get_distance(metric)
        self.margin = float(margin)
        self.metric = self.distance.name

    def __repr__(self):
        return f"{type(self).__name__}(margin={self.margin}, metric={self.metric!r})"

    def mine(self, emb, labels, block=None):
        """Select triplets.

        Parameters
        ----------
        emb : (B, D) NDArray float32
            The batch's embeddings (the selection does not backpropagate).
        labels : (B,) NDArray float32 or int, same context
            ``(B, 1)`` is accepted; array-likes are copied to ``emb``'s context.
        block : int, optional
            Declares the batch's layout: blocks of ``block`` consecutive rows sharing a
            label, each block's label different (a P x K batch of
            :class:`~gluon_triplet.data.samplers.PKBatchSampler`, ``block = K``). A miner
            with a faster path for that layout takes it (see :meth:`uses_blocks`); the
            result is the same as without ``block``.

        Returns
        -------
        anchor_idx, positive_idx, negative_idx : (M,) NDArray int32
            Row indices into ``emb``; ``M`` depends only on ``B`` (see the subclass).
        weight : (M,) NDArray float32
            1.0 for a selected triplet, 0.0 for padding. Padding rows hold valid indices
            (so a gather never fails) but mean nothing.

        Raises
        ------
        ValueError
            ``emb`` not ``(B, D)``, labels not ``(B,)``, or not laid out in blocks of ``block``.
        """
        _check_embeddings(emb)
        b = emb.shape[0]
        with autograd.pause():
            emb = emb.detach()
            labels = _labels_like(labels, emb)
            where = _where(nd, emb)
            if self.uses_blocks(b, block):
                _check_blocks(labels, b, block)
                return self._cast_indices(
                    nd, *self._select_blocks(nd, emb, labels, b, block, where)
                )
            pos, neg = _masks(nd, labels, b, where)
            return self._finish(nd, emb, pos, neg, b, where)

    def select(self, F, emb, labels, batch_size, block=None):
        """:meth:`mine` for ``F = mx.sym`` (or ``mx.nd``), without checks or autograd pause.

        Parameters
        ----------
        F : mx.sym or mx.nd
        emb : (B, D) float32
            Cut from the gradient by the caller (``F.BlockGrad``).
        labels : (B,) float32
        batch_size : int
            ``B``: a symbol has no shape, and the selection's arrays are sized by it.
        block : int, optional
            As in :meth:`mine`, but not checked: the caller guarantees the layout.

        Returns
        -------
        As :meth:`mine`.
        """
        where = _where(F, emb)
        if self.uses_blocks(batch_size, block):
            rows = self._select_blocks(F, emb, labels, batch_size, block, where)
            return self._cast_indices(F, *rows)
        pos, neg = _masks(F, labels, batch_size, where)
        return self._finish(F, emb, pos, neg, batch_size, where)

    def uses_blocks(self, batch_size, block):
        """Whether :meth:`select` takes its block-layout path for these sizes (base: never).

        Parameters
        ----------
        batch_size : int
        block : int or None

        Returns
        -------
        bool
        """
        return False

    def _select_blocks(self, F, emb, labels, b, k, where):  # pragma: no cover - abstract
        """Rows ``anchor, positive, negative, weight`` (the weight float32) of a batch
        laid out in blocks of ``k`` (see :meth:`mine`); the same rows :meth:`_select`
        returns for it."""
        raise NotImplementedError

    @staticmethod
    def _cast(F, a, p, n, w):
        return F.cast(a, "int32"), F.cast(p, "int32"), F.cast(n, "int32"), F.cast(w, "float32")

    @staticmethod
    def _cast_indices(F, a, p, n, w):
        return F.cast(a, "int32"), F.cast(p, "int32"), F.cast(n, "int32"), w

    def _finish(self, F, emb, pos, neg, b, where):
        dist = self.distance._pairwise(F, emb, b, where, emb.dtype if F is nd else "float32")
        return self._cast(F, *self._select(F, dist, pos, neg, b, where, emb))

    def num_triplets(self, batch_size):
        """``M``, the number of rows :meth:`mine` returns for a batch of ``batch_size``."""
        raise NotImplementedError

    def _select(self, F, dist, pos, neg, b, where, emb):  # pragma: no cover - abstract
        """Rows ``anchor, positive, negative, weight`` from the ``(b, b)`` distances and
        masks; ``where`` places new arrays (see :func:`_where`)."""
        raise NotImplementedError


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


def _sample_ranks(F, count, m, groups, where):
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
        See :func:`_where`.

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
    group = _bisect(
        F, cum.reshape((1, -1)), rank.reshape((1, -1)), True, (1, groups), "float64", where
    ).reshape((-1,))
    group = F.minimum(group, groups - 1)
    offset = rank - (F.take(cum, group) - F.take(count, group))
    return group, offset, weight


def _check_batch(miner, b):
    if b > _MAX_BATCH:
        raise ValueError(f"{type(miner).__name__}: batch size {b} > {_MAX_BATCH}")


def _in_blocks(labels: np.ndarray, block: int) -> bool:
    """Whether every row of ``labels`` ``(R, B)`` is blocks of ``block`` equal labels,
    the blocks' labels distinct (the layout ``block=`` declares)."""
    blocks = labels.reshape(len(labels), -1, block)
    firsts = np.sort(blocks[:, :, 0], axis=1)
    return bool((blocks == blocks[:, :, :1]).all() and (firsts[:, 1:] != firsts[:, :-1]).all())


def _check_blocks(labels, b, block):
    """Raise ValueError unless ``labels`` ``(B,)`` are laid out as ``block=`` declares."""
    host = labels.asnumpy() if isinstance(labels, nd.NDArray) else np.asarray(labels)
    if not _in_blocks(host.reshape(1, b), block):
        raise ValueError(
            f"block={block}: the labels are not {b // block} blocks of {block} rows with "
            "one label each, distinct between blocks"
        )


def _check_size(name, value):
    if value is not None and int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return None if value is None else int(value)


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

    ``M = B * B`` makes the loss gather ``3 B^2`` embedding rows (about 1.5 s per step
    for ``B = 256, D = 128`` on a 2-core CPU, versus milliseconds for ``B * 16``), so
    pass ``max_pairs`` (e.g. ``16 * B``) for anything but small batches.

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
            pair, _, weight = _sample_ranks(F, valid, self.max_pairs, b * b, where)
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
        count = _bisect(F, values, dist + self.margin, False, (b, b), "float32", where) * pos
        # float64: cumulative counts reach B^3 / 4, past float32's exact integers.
        count = F.cast(count.reshape((-1,)), "float64")
        pair, offset, weight = _sample_ranks(F, count, self.num_triplets(b), b * b, where)
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
            pair, _, keep = _sample_ranks(F, F.cast(valid, "float64"), m, b * b, where)
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


MINERS = {
    "batch-hard": BatchHardMiner,
    "semi-hard": SemiHardMiner,
    "batch-all": BatchAllMiner,
    "distance-weighted": DistanceWeightedMiner,
}

# The trainer's name for "no online mining": offline triplets from TripletDataset.
OFFLINE = "offline"


def get_miner(name, margin=1.0, metric="squared", **kwargs):
    """Build a registered miner.

    Parameters
    ----------
    name : str
        A key of :data:`MINERS`, or ``"offline"`` (no miner: returns ``None``).
    margin : float
    metric : {"squared", "euclidean", "cosine"}
    **kwargs
        Passed to the miner (e.g. ``max_triplets`` for ``"batch-all"``).

    Returns
    -------
    Miner or None

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    if name == OFFLINE:
        return None
    if name not in MINERS:
        valid = ", ".join(sorted([*MINERS, OFFLINE]))
        raise ValueError(f"unknown miner {name!r}; choose one of: {valid}")
    return MINERS[name](margin=margin, metric=metric, **kwargs)


def mined_loss(loss_fn, emb, anchor_idx, positive_idx, negative_idx, weight):
    """Weighted mean triplet loss over mined rows.

    Parameters
    ----------
    loss_fn : gluon.loss.TripletLoss
        Or any loss called as ``loss_fn(anchor, positive, negative) -> (M,)``.
    emb : (B, D) NDArray float32
        The embeddings the indices refer to (recorded, so gradients reach the net).
    anchor_idx, positive_idx, negative_idx : (M,) NDArray int
    weight : (M,) NDArray float32
        Per-triplet weight, as returned by :meth:`Miner.mine`.

    Returns
    -------
    (1,) NDArray
        ``sum(weight * loss) / sum(weight)``, and exactly 0 (with zero, finite gradients)
        when ``sum(weight) == 0``.

    Raises
    ------
    ValueError
        ``emb`` not 2-D or the four arrays not all ``(M,)``.
    """
    _check_embeddings(emb)
    arrays = (anchor_idx, positive_idx, negative_idx, weight)
    shapes = [tuple(x.shape) for x in arrays]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1:
        raise ValueError(
            f"anchor_idx, positive_idx, negative_idx and weight must all be (M,); got {shapes}"
        )
    m = shapes[0][0]
    # One gather for the three roles, as the trainer does for offline triplets.
    rows = nd.take(emb, nd.concat(anchor_idx, positive_idx, negative_idx, dim=0))
    loss = loss_fn(rows[:m], rows[m : 2 * m], rows[2 * m :])
    weight = weight.astype(loss.dtype)
    total = nd.sum(weight)
    denom = nd.where(total > 0, total, nd.ones_like(total))
    return nd.sum(loss * weight) / denom
