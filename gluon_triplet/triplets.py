"""Balanced anchor/positive/negative triples and the Gluon dataset that serves them.

Triples are stored as integer indices into the sample array, never as copies of the
samples, so memory stays O(N) whatever the sample size.
"""

from __future__ import annotations

import bisect
import logging
import random
from typing import Optional, Tuple

import numpy as np
from mxnet import gluon, nd

__all__ = ["PKBatchSampler", "TripletDataset", "create_pairs", "encode_labels"]

logger = logging.getLogger("gluon_triplet")


def encode_labels(labels) -> Tuple[np.ndarray, np.ndarray]:
    """Map arbitrary hashable labels to dense integer codes.

    Parameters
    ----------
    labels : (N,) array-like
        Integers, strings or any hashable values. ``(N, 1)`` is accepted and flattened.

    Returns
    -------
    codes : (N,) int64
        ``classes[codes] == labels``.
    classes : (C,) array
        The distinct labels, sorted when they are orderable, else in order of appearance.
    """
    if isinstance(labels, nd.NDArray):
        labels = labels.asnumpy()
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {arr.shape}")
    if arr.dtype.kind in "iub" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo <= 4 * arr.size:
            # Dense integer labels: a lookup table is linear, np.unique would sort.
            shifted = arr.astype(np.int64) - lo
            present = np.bincount(shifted, minlength=hi - lo + 1) > 0
            lut = np.cumsum(present) - 1
            return lut[shifted], np.flatnonzero(present) + lo
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError:
        # Mixed types that do not sort (e.g. 1 and "a"): fall back to first appearance.
        index = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in arr.tolist()), np.int64)
        classes = np.empty(len(index), dtype=object)
        classes[:] = list(index)
    return codes.astype(np.int64, copy=False), classes


def _index_dtype(n):
    return np.int32 if n < 2**31 else np.int64


def create_pairs(labels, triplets_per_class: Optional[int] = None, seed=None, warn=True):
    """Draw class-balanced (anchor, positive, negative) index triples.

    Every class with at least two samples anchors the same number ``n`` of triples:
    ``n = (smallest such class) - 1`` unless ``triplets_per_class`` asks for fewer. Within a
    class, the members are shuffled and consecutive members pair up, so ``a != p`` and no
    sample anchors twice. The negative's class is drawn uniformly among all *other*
    classes (singletons included), then its sample uniformly within that class.

    Linear in N apart from one stable integer sort; no Python loop per triple or class.

    Parameters
    ----------
    labels : (N,) array-like of hashable
        Class of each sample.
    triplets_per_class : int, optional
        Cap on ``n``; must be ``1 <= value``. Values above the balanced maximum are clipped.
    seed : int or numpy.random.Generator, optional
        Same seed, same triples.
    warn : bool
        Log a warning when some classes have a single sample.

    Returns
    -------
    anchor_idx, positive_idx, negative_idx : (T,) int32 (int64 beyond 2**31 samples)
        ``T = n * (number of classes with >= 2 samples)``, grouped by anchor class.

    Raises
    ------
    ValueError
        Fewer than two classes with at least two samples.
    """
    codes, classes = encode_labels(labels)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    counts = np.bincount(codes, minlength=len(classes))
    usable = np.flatnonzero(counts >= 2)
    if len(usable) < 2:
        raise ValueError(
            f"need at least 2 classes with >= 2 samples to form triplets; got {len(classes)} "
            f"class(es), {len(usable)} with >= 2 samples"
        )
    singletons = len(classes) - len(usable)
    if singletons and warn:
        logger.warning(
            "%d class(es) have a single sample: they cannot anchor a triplet and are used "
            "only as negatives",
            singletons,
        )
    n = int(counts[usable].min()) - 1
    if triplets_per_class is not None:
        if int(triplets_per_class) < 1:
            raise ValueError(f"triplets_per_class must be >= 1, got {triplets_per_class}")
        n = min(n, int(triplets_per_class))

    idt = _index_dtype(len(codes))
    # Shuffle, then stable-sort by class: each class's members end up contiguous and in
    # random order, which is a per-class permutation without a loop over classes.
    perm = rng.permutation(len(codes)).astype(idt, copy=False)
    keys = codes[perm]
    if len(classes) <= np.iinfo(np.uint16).max:
        keys = keys.astype(np.uint16)  # numpy's stable sort is a linear radix sort at 16 bits
    order = perm[np.argsort(keys, kind="stable")]
    del keys
    del perm
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)

    slots = starts[usable][:, None] + np.arange(n, dtype=np.int64)[None, :]
    anchor_idx = order[slots.ravel()]
    positive_idx = order[slots.ravel() + 1]
    del slots

    anchor_class = np.repeat(usable, n)
    shift = rng.integers(0, len(classes) - 1, size=anchor_class.size)
    neg_class = shift + (shift >= anchor_class)  # uniform over the other classes
    within = (rng.random(anchor_class.size) * counts[neg_class]).astype(np.int64)
    negative_idx = order[starts[neg_class] + within]
    return anchor_idx, positive_idx, negative_idx


class TripletDataset(gluon.data.Dataset):
    """Balanced triplets over labelled samples, as a Gluon dataset.

    Parameters
    ----------
    x : (N, ...) numpy array or NDArray
        Samples. Kept by reference (an NDArray is converted to numpy once).
    y : (N,) array-like of hashable
        Labels: integers, strings, anything hashable; ``(N, 1)`` is flattened.
    transform : callable, optional
        Applied to each sample in ``__getitem__`` (not in :meth:`gather`).
    seed : int, optional
        Seeds the triples; :meth:`resample` draws a fresh, reproducible set.
    triplets_per_class : int, optional
        Cap on the triples each class anchors (default: the balanced maximum).

    Examples
    --------
    >>> ds = TripletDataset(x, y, seed=0)
    >>> loader = mx.gluon.data.DataLoader(ds, batch_size=256, shuffle=True)
    >>> for triples, _ in loader:   # (B, 3, *sample_shape) float32: anchor, positive, negative
    ...     pass
    """

    def __init__(self, x, y, transform=None, seed=None, triplets_per_class=None):
        if isinstance(x, nd.NDArray):
            x = x.asnumpy()
        x = np.asarray(x)
        codes, classes = encode_labels(y)
        if x.ndim < 1 or x.shape[0] != codes.shape[0]:
            raise ValueError(
                f"x and y must have the same length; got x {x.shape} and y {codes.shape}"
            )
        self.x = x
        self.labels = codes
        self.classes = classes
        self.transform = transform
        self.triplets_per_class = triplets_per_class
        self._rng = np.random.default_rng(seed)
        self.triplets = np.empty((0, 3), dtype=np.int64)
        self._warned = False
        self.resample()

    @staticmethod
    def create_pairs(labels, triplets_per_class=None, seed=None):
        """Class-balanced index triples; see :func:`create_pairs`."""
        return create_pairs(labels, triplets_per_class=triplets_per_class, seed=seed)

    def resample(self):
        """Draw a fresh set of triples (the trainer calls this every epoch).

        Returns
        -------
        (T, 3) integer array
            Columns ``anchor_idx, positive_idx, negative_idx``.
        """
        a, p, n = create_pairs(
            self.labels, self.triplets_per_class, self._rng, warn=not self._warned
        )
        self._warned = True
        self.triplets = np.stack([a, p, n], axis=1)
        return self.triplets

    @property
    def anchor_idx(self):
        return self.triplets[:, 0]

    @property
    def positive_idx(self):
        return self.triplets[:, 1]

    @property
    def negative_idx(self):
        return self.triplets[:, 2]

    def __len__(self):
        return len(self.triplets)

    def __getitem__(self, i):
        a, p, n = self.triplets[i]
        samples = [self.x[a], self.x[p], self.x[n]]
        if self.transform is not None:
            samples = [self.transform(s) for s in samples]
        return np.stack(samples).astype(np.float32, copy=False), np.float32(1.0)

    def gather(self, indices):
        """Batched ``__getitem__`` without the per-sample Python: one fancy-index.

        Parameters
        ----------
        indices : (B,) int array
            Positions into :attr:`triplets`.

        Returns
        -------
        (B, 3, *sample_shape) float32
            Equal to ``np.stack([self[i][0] for i in indices])`` when there is no transform.
        """
        idx = self.triplets[np.asarray(indices)]
        return self.x[idx].astype(np.float32, copy=False)


class _Bucket:
    """Classes tied at one number of chunks left, drawn in uniformly random order.

    Drawing from the end of a uniformly shuffled list gives a uniformly random subset
    and leaves the rest uniformly shuffled. Arrivals wait in ``pending`` and are merged
    in only when the bucket is next drawn from: a few at uniformly random positions,
    many with one shuffle. Either way the order stays uniform.
    """

    __slots__ = ("items", "pending", "size")

    def __init__(self):
        self.items = []
        self.pending = []
        self.size = 0

    def add(self, classes):
        self.pending.append(classes)
        self.size += len(classes)

    def take(self, n, rng, rnd):
        if self.pending:
            items = self.items
            arrivals = self.size - len(items)
            if items and arrivals <= 32:
                for classes in self.pending:
                    for c in classes:
                        items.insert(int(rnd.random() * (len(items) + 1)), c)
            elif self.size <= 64:
                for classes in self.pending:
                    items.extend(classes.tolist() if isinstance(classes, np.ndarray) else classes)
                rnd.shuffle(items)
            else:  # large: numpy shuffles faster than Python
                merged = np.concatenate(
                    [np.asarray(c, dtype=np.int64) for c in [items, *self.pending]]
                )
                self.items = rng.permutation(merged).tolist()
            self.pending = []
        items = self.items
        if n >= len(items):
            self.items = []
            out = items
        else:
            out = items[-n:]
            del items[-n:]
        self.size -= len(out)
        return out


def _stable_argsort_codes(codes, n_codes):
    """``np.argsort(codes, kind="stable")`` for integer codes in ``[0, n_codes)``, fast.

    NumPy's stable sort is a linear radix sort for 16-bit keys; wider codes get two
    16-bit passes (least significant first), still linear.
    """
    if n_codes <= 1 << 16:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    order = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((codes[order] >> 16).astype(np.uint16), kind="stable")]


def _distinct_rows(rng, rows, need, pool):
    """``rows`` independent uniform ``need``-subsets of ``range(pool)``: ``(rows, need)``.

    Floyd's algorithm, vectorised over rows: ``O(rows * need**2)``, whatever ``pool``.
    """
    chosen = np.empty((rows, need), dtype=np.int64)
    for i, top in enumerate(range(pool - need, pool)):
        pick = rng.integers(0, top + 1, size=rows)
        taken = (chosen[:, :i] == pick[:, None]).any(axis=1)
        chosen[:, i] = np.where(taken, top, pick)
    return chosen


class PKBatchSampler(gluon.data.Sampler):
    """Batches of ``P`` classes x ``K`` samples that cover every sample each epoch.

    Yields lists of ``P * K`` sample indices, usable as
    ``gluon.data.DataLoader(dataset, batch_sampler=PKBatchSampler(...))``. Each batch
    holds ``P`` distinct classes with ``K`` indices each, listed class by class.

    Epoch rule (one ``__iter__``):

    1. Every class's members are shuffled into a queue and the queue is cut into
       ``t_c = ceil(n_c / K)`` chunks of ``K``. A chunk that runs past the end of the
       queue is completed from the queue's start (cyclically, without replacement), so
       a class with ``n_c >= K`` never repeats an index inside a batch; a class with
       ``n_c < K`` (singletons included) repeats its members, which then appear as
       positives identical to their anchor (distance 0: easy, harmless positives).
    2. Each batch takes the ``P`` classes with the most chunks left to serve, ties broken
       uniformly at random, and serves one chunk of each. When fewer than ``P`` classes
       have chunks left, the batch is completed with classes drawn uniformly at random
       among the finished ones, which serve one more chunk, continuing their queue
       cyclically (a class's extra samples are seen twice before any is seen thrice).
    3. The epoch ends when every chunk has been served, so every sample appears at least
       once. Largest-first keeps classes interleaved to the end and needs the fewest
       batches possible: ``len(self) = max(max_c t_c, ceil(sum_c t_c / P))``.
    4. The batches are yielded in a random order.

    Each ``__iter__`` reshuffles; the sequence of epochs is fixed by ``seed``.
    :meth:`epoch_batches` returns a whole epoch as one array instead.

    Parameters
    ----------
    labels : (N,) array-like of hashable
        Class of each sample (``(N, 1)`` is flattened).
    p : int
        Classes per batch, ``2 <= p <=`` number of classes.
    k : int
        Samples per class, ``>= 2`` (anchors need positives).
    seed : int or numpy.random.Generator, optional

    Raises
    ------
    ValueError
        ``p`` or ``k`` out of range.
    """

    def __init__(self, labels, p, k, seed=None):
        codes, classes = encode_labels(labels)
        p, k = int(p), int(k)
        if k < 2:
            raise ValueError(f"k must be >= 2 samples per class (anchors need a positive), got {k}")
        if p < 2:
            raise ValueError(f"p must be >= 2 classes per batch (anchors need a negative), got {p}")
        if p > len(classes):
            raise ValueError(
                f"p={p} classes per batch, but the labels have only {len(classes)} classes"
            )
        self.labels = codes
        self.classes = classes
        self.p = p
        self.k = k
        self.counts = np.bincount(codes, minlength=len(classes))
        self.chunks = -(-self.counts // k)
        self._num_batches = max(int(self.chunks.max()), -(-int(self.chunks.sum()) // p))
        self._starts = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def __len__(self):
        return self._num_batches

    def __iter__(self):
        for batch in self.epoch_batches():
            yield batch.tolist()

    def epoch_batches(self):
        """One epoch as one array (advances the RNG exactly like ``__iter__``).

        Returns
        -------
        (len(self), P * K) int64
            Row ``b`` is the ``b``-th batch; ``K`` consecutive entries share a class.
        """
        rng = self._rng
        members = self._shuffled_members(rng)
        slot_class = self._schedule(rng)
        # Chunk number of each slot: how many times its class was served before it.
        order = _stable_argsort_codes(slot_class, len(self.classes))
        served = np.bincount(slot_class, minlength=len(self.classes))
        if (served < self.chunks).any():
            raise RuntimeError("PKBatchSampler: a chunk was left unserved; this is a bug")
        first = np.concatenate(([0], np.cumsum(served)[:-1]))
        slot_chunk = np.empty_like(slot_class)
        slot_chunk[order] = np.arange(len(order)) - first[slot_class[order]]
        # Chunk j of class c is queue positions j*K ... j*K+K-1, wrapping around the queue.
        k = self.k
        local = (slot_chunk[:, None] * k + np.arange(k)) % self.counts[slot_class][:, None]
        batches = members[self._starts[slot_class][:, None] + local].astype(np.int64)
        batches = batches.reshape(self._num_batches, self.p * k)
        return batches[rng.permutation(self._num_batches)]

    def _shuffled_members(self, rng):
        """Sample indices grouped by class, each class's members in a random order."""
        perm = rng.permutation(len(self.labels)).astype(_index_dtype(len(self.labels)))
        # A stable sort of a random permutation by class: a per-class shuffle, no loop.
        return perm[_stable_argsort_codes(self.labels[perm], len(self.classes))]

    def _schedule(self, rng):
        """The greedy largest-first schedule: the class of every batch slot.

        Classes sit in buckets keyed by chunks left. A step empties the top bucket into
        as many whole batches as it fills, then completes the last, partial one from
        the next buckets down; so a step costs a few list operations, not one per batch.
        Once fewer than P classes have chunks left, the remaining batches are generated
        in bulk (those classes plus random finished ones).

        Returns
        -------
        (len(self) * P,) int64
            Batch ``b`` is slots ``b * P ... (b + 1) * P - 1``.
        """
        p = self.p
        rnd = random.Random(int(rng.integers(2**63)))
        buckets = {0: _Bucket()}
        by_level = np.argsort(self.chunks, kind="stable")
        values, firsts = np.unique(self.chunks[by_level], return_index=True)
        for level, members in zip(values.tolist(), np.split(by_level, firsts[1:])):
            buckets[level] = _Bucket()
            buckets[level].add(members)
        levels = sorted(buckets)  # ascending; 0 always present
        active = len(self.classes)  # classes with chunks left
        slots, pieces = [], []

        def move(level, classes):
            if level not in buckets:
                buckets[level] = _Bucket()
                bisect.insort(levels, level)
            buckets[level].add(classes)

        def take(level, n):
            part = buckets[level].take(n, rng, rnd)
            if level and not buckets[level].size:
                del buckets[level]
                levels.remove(level)
            return part

        while levels[-1] > 0 and active >= p:
            top = levels[-1]
            group = take(top, buckets[top].size)
            whole = len(group) - len(group) % p
            if whole:
                slots.extend(group[:whole])
                move(top - 1, group[:whole])
            rest = group[whole:]
            if rest:
                slots.extend(rest)
                need = p - len(rest)
                parts = []
                for level in levels[bisect.bisect_left(levels, top) - 1 :: -1]:
                    parts.append((level, take(level, need)))
                    need -= len(parts[-1][1])
                    if not need:
                        break
                # Move only after the batch is complete: a class moved one level down
                # must not be drawn again from that level for the same batch.
                for level, part in parts:
                    slots.extend(part)
                    move(max(level - 1, 0), part)
                    active -= len(part) if level == 1 else 0
                move(top - 1, rest)
            active -= len(group) if top == 1 else 0
        pieces.append(np.asarray(slots, dtype=np.int64))

        # Fewer than P classes left: each batch is all of them plus random finished ones.
        left = [
            (lv, c) for lv in levels if lv for c in buckets[lv].take(buckets[lv].size, rng, rnd)
        ]
        left_levels = np.array([level for level, _ in left], dtype=np.int64)
        left_classes = np.array([c for _, c in left], dtype=np.int64)
        done = np.asarray(buckets[0].take(buckets[0].size, rng, rnd), dtype=np.int64)
        while len(left_classes):
            steps = int(left_levels.min())
            need = p - len(left_classes)
            extra = done[_distinct_rows(rng, steps, need, len(done))]
            rows = np.concatenate([np.broadcast_to(left_classes, (steps, p - need)), extra], 1)
            pieces.append(rows.ravel())
            left_levels = left_levels - steps
            done = np.concatenate([done, left_classes[left_levels == 0]])
            left_classes = left_classes[left_levels > 0]
            left_levels = left_levels[left_levels > 0]
        slot_class = np.concatenate(pieces)
        if len(slot_class) != self._num_batches * p:
            raise RuntimeError("PKBatchSampler: schedule does not match len(); this is a bug")
        return slot_class
