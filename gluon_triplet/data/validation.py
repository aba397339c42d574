"""The validation split a run chooses its best epoch on, carved out of the training data.

Closed sets (every test class is a training class) lose a share of each class: the
validation split is stratified, and holds no more than the per-epoch evaluation scores
(at most ``max_samples // C`` of each of ``C`` classes). Open sets (test classes never
seen in training) lose whole classes instead, so that validation, like the test,
retrieves among classes the net never trained on. The split depends on the labels, the
fraction and the cap only (its seed is fixed), so every run on the same data validates on
the same samples.

The samples themselves are never copied whole: streamed samples
(:class:`~gluon_triplet.data.streaming.LazyImages`) are split into two index subsets, and
an in-memory array has its rows reordered in place so that both splits are views of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "VALIDATION_SEED",
    "ValidationSplit",
    "carve_validation",
    "per_class_cap",
    "reorder",
    "split_rows",
    "unseen_test_classes",
]

#: The fixed seed of every validation split: the split is a property of the data.
VALIDATION_SEED = 20240611

#: Samples of a class that stay in training, at least (closed sets).
MIN_TRAIN_PER_CLASS = 2
#: Samples of a class in a closed set's validation split, when it gets any: leave-one-out
#: retrieval needs another sample of the query's class.
MIN_VAL_PER_CLASS = 2


@dataclass(frozen=True)
class ValidationSplit:
    """Which training samples train (``fit``) and which validate (``val``).

    Attributes
    ----------
    fit, val : (n,) int64
        Sorted positions in the training split.
    mode : str
        ``"per-class"`` (stratified), ``"class-disjoint"`` (whole classes, open sets) or
        ``"none"`` (no validation split; ``val`` is empty).
    note : str
        Why there is none, or an empty string.
    cap : int or None
        Per-class cap of a per-class split (``max_samples // C``), None without one.
    """

    fit: np.ndarray
    val: np.ndarray
    mode: str
    note: str = ""
    cap: Optional[int] = None


def unseen_test_classes(y_train: Any, y_test: Any) -> np.ndarray:
    """The test labels that no training sample has, sorted."""
    return np.setdiff1d(np.unique(np.asarray(y_test)), np.unique(np.asarray(y_train)))


def _none(n: int, note: str) -> ValidationSplit:
    return ValidationSplit(np.arange(n, dtype=np.int64), np.empty(0, np.int64), "none", note)


def per_class_cap(y: Any, max_samples: Optional[int]) -> Optional[int]:
    """The most a closed set's class gives: ``max_samples // C`` for ``C`` classes (at
    least :data:`MIN_VAL_PER_CLASS`), None when ``max_samples`` is None or 0 (no cap)."""
    if not max_samples:
        return None
    return max(MIN_VAL_PER_CLASS, int(max_samples) // max(1, len(np.unique(np.asarray(y)))))


def _per_class(
    y: np.ndarray, fraction: float, rng, cap: Optional[int] = None
) -> Tuple[np.ndarray, str]:
    """Validation positions: ``max(2, min(round(n * fraction), cap))`` of each class of
    ``n`` that keeps at least 2 for training, none of the others."""
    picked = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        share = int(round(len(members) * fraction))
        k = max(MIN_VAL_PER_CLASS, share if cap is None else min(share, cap))
        if len(members) - k >= MIN_TRAIN_PER_CLASS:
            picked.append(rng.permutation(members)[:k])
    if len(picked) < 2:
        return np.empty(0, np.int64), (
            f"fewer than two classes have {MIN_VAL_PER_CLASS + MIN_TRAIN_PER_CLASS} or more "
            "training samples"
        )
    return np.concatenate(picked), ""


def _whole_classes(y: np.ndarray, fraction: float, rng) -> Tuple[np.ndarray, str]:
    """Validation positions: every sample of ``round(C * fraction)`` classes (at least 2)
    with two or more samples, leaving at least 2 classes to train on."""
    labels, counts = np.unique(y, return_counts=True)
    usable = labels[counts >= 2]
    k = max(2, int(round(len(labels) * fraction)))
    if len(labels) - k < 2 or len(usable) < k:
        return np.empty(0, np.int64), (
            f"{len(labels)} training classes are too few to hold out {k} whole classes and "
            "keep two to train on"
        )
    chosen = rng.choice(usable, size=k, replace=False)
    return np.flatnonzero(np.isin(y, chosen)), ""


def carve_validation(
    y_train: Any,
    y_test: Optional[Any],
    fraction: float,
    seed: int = VALIDATION_SEED,
    max_samples: Optional[int] = None,
) -> ValidationSplit:
    """Split the training positions into fit and validation.

    Parameters
    ----------
    y_train : (N,) labels
    y_test : (M,) labels or None
        When no test label is a training label (an open set), whole classes validate.
    fraction : float
        In [0, 1): the share of each class (closed) or of the classes (open) to hold out;
        0 gives mode ``"none"``.
    seed : int
    max_samples : int, optional
        Closed sets: at most ``max_samples // C`` of each of the ``C`` classes (at least
        2), so that the split holds about what a per-epoch evaluation sample of
        ``max_samples`` scores; None or 0: no cap. Open sets ignore it.

    Returns
    -------
    ValidationSplit
        Mode ``"none"`` with a note when the data is too small to hold any out.
    """
    y = np.asarray(y_train)
    if not fraction > 0:
        return _none(len(y), "--val-fraction is 0")
    rng = np.random.default_rng(seed)
    open_set = y_test is not None and len(np.intersect1d(np.unique(y_test), np.unique(y))) == 0
    cap = None if open_set else per_class_cap(y, max_samples)
    if open_set:
        val, note = _whole_classes(y, fraction, rng)
    else:
        val, note = _per_class(y, fraction, rng, cap)
    if not len(val):
        return _none(len(y), note)
    val = np.sort(val).astype(np.int64)
    fit = np.setdiff1d(np.arange(len(y), dtype=np.int64), val)
    return ValidationSplit(fit, val, "class-disjoint" if open_set else "per-class", cap=cap)


def _swaps(split: ValidationSplit) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows to exchange so that validation rows come last: ``move_in`` (validation
    rows before the end), ``move_out`` (fit rows at the end, as many), and the resulting
    order (the original position of each row)."""
    fit, val = split.fit, split.val
    n = len(fit) + len(val)
    head = len(fit)
    move_in = val[val < head]
    move_out = np.setdiff1d(np.arange(head, n), val)
    order = np.arange(n, dtype=np.int64)
    order[move_in], order[move_out] = move_out, move_in
    return move_in, move_out, order


def split_rows(x: Any, split: ValidationSplit) -> Tuple[Any, Any, np.ndarray]:
    """The fit and validation samples of ``x``, without copying the whole of it.

    A NumPy array has its rows reordered **in place** so that validation rows come last:
    only the validation rows that are not already at the end swap places with fit rows at
    the end (a temporary copy of at most twice the validation rows), and both splits are
    views of ``x``. Streamed samples (with ``subset``) become two index subsets in the
    same order, so that a streamed run trains as an in-memory one. Any other array is
    indexed (a copy).

    Returns
    -------
    x_fit, x_val : array-likes
    order : (N,) int64
        The original position of each row of ``concatenate([x_fit, x_val])``: index labels
        and paths with it.
    """
    move_in, move_out, order = _swaps(split)
    head = len(split.fit)
    if hasattr(x, "subset"):
        return x.subset(order[:head]), x.subset(order[head:]), order
    if not (isinstance(x, np.ndarray) and x.flags.writeable and x.flags.c_contiguous):
        return x[order[:head]], x[order[head:]], order
    if len(move_in):
        kept = x[move_in]  # a copy
        x[move_in] = x[move_out]
        x[move_out] = kept
        del kept
    return x[:head], x[head:], order


def reorder(values: Optional[Sequence[Any]], order: np.ndarray) -> Optional[Tuple[Any, ...]]:
    """``values`` (e.g. file paths) in the order :func:`split_rows` returned, or None."""
    return None if values is None else tuple(values[int(i)] for i in order)
