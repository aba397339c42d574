"""Batch samplers: P classes x K samples per batch, one pass's worth of samples an epoch.

Online miners need batches with several samples of each of several classes;
:class:`PKBatchSampler` draws them class-balanced: every class is served equally often,
and within a class every sample is seen before any is seen again.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
from mxnet import gluon

from .triplets import encode_labels

__all__ = ["PKBatchSampler"]


def _stable_argsort_codes(codes, n_codes):
    """``np.argsort(codes, kind="stable")`` for integer codes in ``[0, n_codes)``, fast.

    NumPy's stable sort is a linear radix sort for 16-bit keys; wider codes get two
    16-bit passes (least significant first), still linear.
    """
    if n_codes <= 1 << 16:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    order = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((codes[order] >> 16).astype(np.uint16), kind="stable")]


def _segment_starts(sizes):
    """``(S,)`` sizes -> ``(S,)`` offsets of each segment in their concatenation."""
    return np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)


def _grouped_shuffle(sizes, rng):
    """A uniform permutation of ``range(n)`` for each ``n`` of ``sizes``, concatenated.

    Returns ``(seg, local)``: ``(sum(sizes),)`` segment of each position and its item.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    seg = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    perm = rng.permutation(len(seg))
    # A stable sort of a random permutation by segment: a shuffle per segment, no loop.
    shuffled = perm[_stable_argsort_codes(seg[perm], max(len(sizes), 1))]
    return seg, shuffled - _segment_starts(sizes)[seg]


def _partition_heads(seg, raw, bad, head):
    """Each segment of ``raw`` reordered: its first ``head[s]`` items not ``bad`` (in
    order), then the rest (in order). ``seg, raw, bad``: ``(L,)``; ``head``: ``(S,)``."""
    good = (~bad).astype(np.int64)
    ranks = np.cumsum(good) - good  # good items before each position, over all segments
    ranks -= ranks[np.searchsorted(seg, seg)]  # ... within its segment
    first = (good == 1) & (ranks < head[seg])
    order = _stable_argsort_codes(seg * 2 + (~first), 2 * max(int(seg[-1]) + 1, 1))
    return raw[order]


class _Queues:
    """Cyclic queues of several groups of items, read in windows of ``w``.

    Group ``g`` has items ``0 .. n_g - 1`` and goes through them in passes: each pass is a
    shuffle, and a queue's position persists from one :meth:`take` to the next, so every
    item of a group is read once before any is read again. A window that runs over the
    end of a pass takes the first items of the next pass that it does not hold yet (the
    others follow right after it): a window repeats an item only when ``n_g < w``, and
    then holds all ``n_g``.
    """

    def __init__(self, sizes, w, rng):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.starts = _segment_starts(self.sizes)
        self.w = int(w)
        self.order = _grouped_shuffle(self.sizes, rng)[1]  # (sum n,) the current passes
        self.pos = np.zeros(len(self.sizes), dtype=np.int64)  # next item of each pass

    def take(self, windows, rng):
        """``(G,)`` windows per group -> ``(sum(windows), w)`` items, group by group."""
        n, w = self.sizes, self.w
        need = np.asarray(windows, dtype=np.int64) * w
        left = n - self.pos
        passes = -(-np.maximum(need - left, 0) // n)
        seg_group = np.repeat(np.arange(len(n), dtype=np.int64), passes)
        seg, raw = _grouped_shuffle(n[seg_group], rng)
        # The stream of each group: the rest of its pass, then its new passes.
        lengths = left + passes * n
        gstart = _segment_starts(lengths)
        first_new = np.cumsum(passes) - passes  # index of each group's first new pass
        nth = np.arange(len(seg_group)) - first_new[seg_group]
        offset = left[seg_group] + nth * n[seg_group]  # of each new pass in its stream
        into = offset % w  # its position in the window it starts in
        head = np.where(into > 0, np.minimum(w - into, n[seg_group]), 0)
        stream = np.empty(int(lengths.sum()), dtype=np.int64)
        stream[_ranges(gstart, left)] = self.order[_ranges(self.starts + self.pos, left)]
        new_at = _ranges(gstart[seg_group] + offset, n[seg_group])
        stream[new_at] = raw
        # A pass's head depends on the end of the pass before it, which may itself be a
        # new pass's head (short passes): settle pass by pass, vectorised over groups.
        seen_from = gstart[seg_group] + offset - into
        width = into.copy()
        arranged = raw
        for _ in range(int(passes.max(initial=0))):
            seen = stream[_ranges(seen_from, width)]
            seen_key = np.repeat(np.arange(len(seg_group)), width) * (n.max() + 1) + seen
            bad = np.isin(seg * (n.max() + 1) + raw, seen_key)
            arranged = _partition_heads(seg, raw, bad, head) if len(raw) else raw
            if np.array_equal(stream[new_at], arranged):
                break
            stream[new_at] = arranged
        out = stream[_ranges(gstart, need)].reshape(-1, w)
        self._advance(passes, need, left, seg_group, arranged)
        return out

    def _advance(self, passes, need, left, seg_group, arranged):
        """Keep each group's last pass and the position reached in it."""
        n = self.sizes
        renewed = passes > 0
        last = np.cumsum(passes) - 1  # each group's last new pass
        seg_start = _segment_starts(n[seg_group])
        for_groups = np.flatnonzero(renewed)
        self.order[_ranges(self.starts[for_groups], n[for_groups])] = arranged[
            _ranges(seg_start[last[for_groups]], n[for_groups])
        ]
        self.pos = np.where(renewed, need - left - (passes - 1) * n, self.pos + need)

    def state_dict(self) -> Dict[str, Any]:
        return {"order": self.order.tolist(), "pos": self.pos.tolist()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        order = np.asarray(state["order"], dtype=np.int64)
        pos = np.asarray(state["pos"], dtype=np.int64)
        if order.shape != self.order.shape or pos.shape != self.pos.shape:
            raise ValueError("PKBatchSampler state is for other labels")
        self.order, self.pos = order, pos


def _ranges(starts, lengths):
    """The concatenated ranges ``starts[i] .. starts[i] + lengths[i] - 1``: ``(sum,)``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if not total:
        return np.empty(0, dtype=np.int64)
    keep = lengths > 0
    starts, lengths = np.asarray(starts, dtype=np.int64)[keep], lengths[keep]
    steps = np.ones(total, dtype=np.int64)
    ends = np.cumsum(lengths)
    steps[0] = starts[0]
    steps[ends[:-1]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(steps)


class PKBatchSampler(gluon.data.Sampler):
    """Class-balanced batches of ``P`` classes x ``K`` samples, ``ceil(N / (P K))`` an epoch.

    Yields lists of ``P * K`` sample indices, usable as
    ``gluon.data.DataLoader(dataset, batch_sampler=PKBatchSampler(...))``. Each batch
    holds ``P`` distinct classes with ``K`` indices each, listed class by class.

    An epoch is one pass's worth of samples: ``len(self) = ceil(N / (P * K))`` batches
    (the convention of pytorch-metric-learning's ``MPerClassSampler``), whatever the
    class sizes. The sampler's state runs on from one epoch to the next:

    1. Classes: the classes go round in passes, each a shuffle of all classes, and a
       batch takes the next ``P``, so every class is served equally often (the counts
       never differ by more than one). A batch that runs over the end of a pass takes
       the first classes of the next pass that it does not hold yet.
    2. Samples: each class's members go round in the same way, ``K`` at a time, through
       a shuffled queue whose position persists across epochs: every member is seen once
       before any is seen again. A chunk repeats a member only when the class has fewer
       than ``K`` members (then it holds them all); such repeats are positives identical
       to their anchor (distance 0: easy, harmless positives).

    On a balanced set every sample is seen about once an epoch; on an unequal one a
    small class is seen several times an epoch and a large one in parts, over epochs.
    The sequence of epochs is fixed by ``seed``; :meth:`state_dict` holds what the next
    epoch depends on besides the generator. :meth:`epoch_batches` returns a whole epoch
    as one array.

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
        self._num_batches = max(1, -(-len(codes) // (p * k)))
        self._starts = _segment_starts(self.counts)
        self._members = _stable_argsort_codes(codes, len(classes))  # grouped by class
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._classes = _Queues([len(classes)], p, self._rng)
        self._samples = _Queues(self.counts, k, self._rng)

    def __len__(self):
        return self._num_batches

    def __iter__(self):
        for batch in self.epoch_batches():
            yield batch.tolist()

    def epoch_batches(self):
        """One epoch as one array (advances the state exactly like ``__iter__``).

        Returns
        -------
        (len(self), P * K) int64
            Row ``b`` is the ``b``-th batch; ``K`` consecutive entries share a class.
        """
        slot_class = self._classes.take([self._num_batches], self._rng).ravel()
        served = np.bincount(slot_class, minlength=len(self.classes))
        chunks = self._samples.take(served, self._rng)  # grouped by class, in queue order
        # The i-th slot of class c gets its i-th chunk: sorting the slots by class
        # (stably) lists them in the order the chunks come.
        rows = np.empty(len(slot_class), dtype=np.int64)
        rows[_stable_argsort_codes(slot_class, len(self.classes))] = np.arange(len(slot_class))
        local = chunks[rows] + self._starts[slot_class][:, None]
        return self._members[local].astype(np.int64).reshape(self._num_batches, -1)

    def state_dict(self) -> Dict[str, Any]:
        """JSON-serialisable queue states (the generator's state is kept apart)."""
        return {"classes": self._classes.state_dict(), "samples": self._samples.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises
        ------
        ValueError
            The state is for other labels.
        """
        self._classes.load_state_dict(state["classes"])
        self._samples.load_state_dict(state["samples"])
