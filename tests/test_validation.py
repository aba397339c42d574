"""The validation split: carved per class (closed sets) or by whole classes (open sets),
and split out of the samples as views or index subsets, never as a copy of the whole."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gluon_triplet.data.validation import (
    MIN_TRAIN_PER_CLASS,
    carve_validation,
    split_rows,
    unseen_test_classes,
)

label_lists = st.lists(st.integers(0, 7), min_size=2, max_size=200)


@settings(max_examples=200, deadline=None)
@given(
    labels=label_lists,
    fraction=st.floats(0.01, 0.9),
    max_samples=st.one_of(st.none(), st.just(0), st.integers(2, 120)),
)
def test_closed_set_split_is_a_stratified_partition(labels, fraction, max_samples):
    y = np.array(labels)
    split = carve_validation(y, y, fraction, max_samples=max_samples)
    classes = len(np.unique(y))
    cap = max(2, max_samples // classes) if max_samples else None
    # A partition of the training positions.
    assert np.array_equal(np.sort(np.concatenate([split.fit, split.val])), np.arange(len(y)))
    if split.mode == "none":
        assert len(split.val) == 0 and split.note
        return
    assert split.mode == "per-class"
    for label in np.unique(y):
        n = int((y == label).sum())
        in_val = int((y[split.val] == label).sum())
        if in_val:  # every validation query has another sample of its class
            assert in_val >= 2 and n - in_val >= MIN_TRAIN_PER_CLASS
            share = int(round(n * fraction))
            assert in_val == max(2, share if cap is None else min(share, cap))
        else:  # too small to give any: it keeps all its samples
            assert n - max(2, int(round(n * fraction))) < MIN_TRAIN_PER_CLASS
    assert len(np.unique(y[split.val])) >= 2


@settings(max_examples=200, deadline=None)
@given(labels=label_lists, fraction=st.floats(0.01, 0.9))
def test_open_set_split_holds_out_whole_classes(labels, fraction):
    y = np.array(labels)
    split = carve_validation(y, np.array([100, 101]), fraction)  # no test class trains
    if split.mode == "none":
        return
    assert split.mode == "class-disjoint"
    val_classes, fit_classes = set(y[split.val]), set(y[split.fit])
    assert not val_classes & fit_classes
    assert len(val_classes) == max(2, int(round(len(np.unique(y)) * fraction)))
    assert len(fit_classes) >= 2


def test_the_split_is_fixed_and_zero_disables_it():
    y = np.repeat(np.arange(5), 20)
    a, b = carve_validation(y, y, 0.1), carve_validation(y, y, 0.1)
    assert np.array_equal(a.val, b.val) and len(a.val) == 10
    off = carve_validation(y, y, 0.0)
    assert off.mode == "none" and len(off.fit) == 100


def test_the_split_holds_no_more_than_the_evaluation_sample():
    y = np.repeat(np.arange(10), [5000] + [1000] * 9)
    split = carve_validation(y, y, 0.1, max_samples=2000)
    # 10 % would be 500 and 100 a class (1,400); the cap is 2000 // 10 = 200 a class.
    assert split.cap == 200
    assert np.bincount(y[split.val]).tolist() == [200] + [100] * 9
    assert len(carve_validation(y, y, 0.1, max_samples=0).val) == 1400  # 0: no cap
    assert carve_validation(y, y, 0.1, max_samples=0).cap is None
    # Open sets hold out whole classes, capped or not.
    open_split = carve_validation(y, np.array([99]), 0.2, max_samples=2000)
    assert open_split.mode == "class-disjoint" and open_split.cap is None


def test_unseen_test_classes():
    assert list(unseen_test_classes([0, 1, 2], [2, 3, 4, 4])) == [3, 4]
    assert len(unseen_test_classes([0, 1], [1, 0])) == 0


@settings(max_examples=100, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=8, max_size=80), fraction=st.floats(0.05, 0.6))
def test_split_rows_gives_views_of_the_right_rows(labels, fraction):
    y = np.array(labels)
    split = carve_validation(y, y, fraction)
    x = np.arange(len(y) * 6, dtype=np.float32).reshape(len(y), 2, 3)
    original = x.copy()
    x_fit, x_val, order = split_rows(x, split)
    # Brute force: each row is the original row order names, fit rows first.
    assert np.array_equal(np.concatenate([x_fit, x_val]), original[order])
    assert sorted(order[: len(x_fit)]) == sorted(split.fit)
    assert sorted(order[len(x_fit) :]) == sorted(split.val)
    # Views of x, not copies.
    assert np.shares_memory(x_fit, x) and (len(x_val) == 0 or np.shares_memory(x_val, x))


class _Subsettable:
    """What LazyImages and MappedSamples offer: rows by index, nothing read."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def __len__(self):
        return len(self.rows)

    def subset(self, idx):
        return _Subsettable(self.rows[idx])


def test_split_rows_of_streamed_samples_are_index_subsets():
    y = np.repeat(np.arange(4), 10)
    split = carve_validation(y, y, 0.2)
    x_fit, x_val, order = split_rows(_Subsettable(np.arange(40)), split)
    assert isinstance(x_fit, _Subsettable) and isinstance(x_val, _Subsettable)
    assert sorted(x_fit.rows) == list(split.fit) and sorted(x_val.rows) == list(split.val)
    # The same rows in the same order as an in-memory array's split: same training.
    in_memory = np.arange(40)
    a, b, same = split_rows(in_memory, split)
    assert list(x_fit.rows) == list(a) and list(x_val.rows) == list(b)
    assert list(order) == list(same)


@pytest.mark.parametrize("writeable", [False])
def test_split_rows_copies_a_read_only_array(writeable):
    y = np.repeat(np.arange(4), 10)
    split = carve_validation(y, y, 0.2)
    x = np.arange(40.0)
    x.flags.writeable = writeable
    x_fit, x_val, order = split_rows(x, split)
    assert list(x_fit) == list(order[:32]) and list(x_val) == list(order[32:])
    assert sorted(x_val) == list(split.val)
