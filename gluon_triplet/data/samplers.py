"""Batch samplers: P classes x K samples per batch, covering every sample each epoch.

Online miners need batches with several samples of each of several classes;
:class:`PKBatchSampler` draws them so that every sample is seen every epoch.
"""

from __future__ import annotations

import bisect
import random

import numpy as np
from mxnet import gluon

from .triplets import _index_dtype, encode_labels

__all__ = ["PKBatchSampler", "pk_epoch_batches", "resolve_p"]

#: P of the P x K batches when not given: every class, up to this many.
DEFAULT_PK_CLASSES = 10


def resolve_p(p, num_classes: int) -> int:
    """P of the P x K batches: ``p`` when given, else every class up to 10."""
    return int(p or min(DEFAULT_PK_CLASSES, num_classes))


def pk_epoch_batches(counts, p: int, k: int) -> int:
    """Batches of one :class:`PKBatchSampler` epoch over classes of ``counts`` samples.

    Parameters
    ----------
    counts : (C,) array-like of int
        Samples of each class.
    p, k : int
        Classes per batch and samples per class.

    Returns
    -------
    int
        ``max(max_c t_c, ceil(sum_c t_c / p))`` with ``t_c = ceil(counts_c / k)``: the
        largest class served once, and every chunk of every class at least once.
    """
    chunks = -(-np.asarray(counts, dtype=np.int64) // int(k))
    if chunks.size == 0:
        return 0
    return max(int(chunks.max()), -(-int(chunks.sum()) // int(p)))


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


class _Levels:
    """Classes in :class:`_Bucket` s keyed by chunks left, the keys kept sorted."""

    def __init__(self, chunks, rng, rnd):
        self.rng, self.rnd = rng, rnd
        self.buckets = {0: _Bucket()}
        by_level = np.argsort(chunks, kind="stable")
        values, firsts = np.unique(chunks[by_level], return_index=True)
        for level, members in zip(values.tolist(), np.split(by_level, firsts[1:])):
            self.buckets[level] = _Bucket()
            self.buckets[level].add(members)
        self.levels = sorted(self.buckets)  # ascending; 0 always present
        self.active = len(chunks)  # classes with chunks left

    def move(self, level, classes):
        if level not in self.buckets:
            self.buckets[level] = _Bucket()
            bisect.insort(self.levels, level)
        self.buckets[level].add(classes)

    def take(self, level, n):
        part = self.buckets[level].take(n, self.rng, self.rnd)
        if level and not self.buckets[level].size:
            del self.buckets[level]
            self.levels.remove(level)
        return part

    def take_all(self, level):
        return self.take(level, self.buckets[level].size)

    def drain(self, level):
        """Every class of a level, the level kept (for the bulk phase, which ends here)."""
        bucket = self.buckets[level]
        return bucket.take(bucket.size, self.rng, self.rnd)


def _largest_first(levels, p):
    """The greedy phase while at least ``p`` classes have chunks left: slot classes."""
    slots = []
    while levels.levels[-1] > 0 and levels.active >= p:
        top = levels.levels[-1]
        group = levels.take_all(top)
        whole = len(group) - len(group) % p
        if whole:
            slots.extend(group[:whole])
            levels.move(top - 1, group[:whole])
        rest = group[whole:]
        if rest:
            slots.extend(rest)
            _complete_batch(levels, top, p - len(rest), slots)
            levels.move(top - 1, rest)
        levels.active -= len(group) if top == 1 else 0
    return np.asarray(slots, dtype=np.int64)


def _complete_batch(levels, top, need, slots):
    """Fill a partial batch with ``need`` classes from the levels below ``top``."""
    parts = []
    for level in levels.levels[bisect.bisect_left(levels.levels, top) - 1 :: -1]:
        parts.append((level, levels.take(level, need)))
        need -= len(parts[-1][1])
        if not need:
            break
    # Move only after the batch is complete: a class moved one level down
    # must not be drawn again from that level for the same batch.
    for level, part in parts:
        slots.extend(part)
        levels.move(max(level - 1, 0), part)
        levels.active -= len(part) if level == 1 else 0


def _fewer_than_p_left(levels, p, rng):
    """The rest, in bulk: each batch is every class left plus random finished ones."""
    left = [(lv, c) for lv in levels.levels if lv for c in levels.drain(lv)]
    left_levels = np.array([level for level, _ in left], dtype=np.int64)
    left_classes = np.array([c for _, c in left], dtype=np.int64)
    done = np.asarray(levels.drain(0), dtype=np.int64)
    pieces = []
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
    return pieces


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
        self._num_batches = pk_epoch_batches(self.counts, p, k)
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
        rnd = random.Random(int(rng.integers(2**63)))
        levels = _Levels(self.chunks, rng, rnd)
        pieces = [_largest_first(levels, self.p)]
        pieces.extend(_fewer_than_p_left(levels, self.p, rng))
        slot_class = np.concatenate(pieces)
        if len(slot_class) != self._num_batches * self.p:
            raise RuntimeError("PKBatchSampler: schedule does not match len(); this is a bug")
        return slot_class
