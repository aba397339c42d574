"""Balanced anchor/positive/negative triples and the Gluon dataset that serves them.

Triples are stored as integer indices into the sample array, never as copies of the
samples, so memory stays O(N) whatever the sample size.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np
from mxnet import gluon, nd

__all__ = ["TripletDataset", "create_pairs", "encode_labels"]

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
        # uint64 labels beyond int64 (e.g. hashes) are encoded by np.unique below.
        if hi - lo <= 4 * arr.size and hi <= np.iinfo(np.int64).max:
            # Dense integer labels: a lookup table is linear, np.unique would sort.
            shifted = arr.astype(np.int64) - lo
            present = np.bincount(shifted, minlength=hi - lo + 1) > 0
            lut = np.cumsum(present) - 1
            return lut[shifted], np.flatnonzero(present) + lo
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError:
        # Mixed types that do not sort (e.g. 1 and "a"): fall back to first appearance.
        index: Dict[Any, int] = {}
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
    x : (N, ...) numpy array, NDArray or LazyImages
        Samples. Kept by reference (an NDArray is converted to numpy once; pictures
        streamed by :class:`~gluon_triplet.data.streaming.LazyImages` are never all decoded).
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
        if not hasattr(x, "dataset"):  # streaming.LazyImages stays lazy: triples are indices
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
