import logging

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gluon_triplet.data.triplets import TripletDataset, create_pairs, encode_labels

# Label layouts: a list of class sizes (singletons included) and a label style.
class_sizes = st.lists(st.integers(min_value=1, max_value=12), min_size=2, max_size=8)
label_style = st.sampled_from(["int", "str", "sparse-int"])


def make_labels(sizes, style, seed):
    raw = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(seed).shuffle(raw)
    if style == "str":
        return np.array([f"class-{c}" for c in raw])
    if style == "sparse-int":
        return raw * 1000 - 7
    return raw


def check_triples(labels, a, p, n, expected_per_class):
    """Every listed triple, one by one, against the contract."""
    labels = list(labels)
    per_class = {}
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()):
        assert ai != pi
        assert labels[ai] == labels[pi]
        assert labels[ni] != labels[ai]
        per_class[labels[ai]] = per_class.get(labels[ai], 0) + 1
    counts = {c: labels.count(c) for c in set(labels)}
    anchoring = {c for c, k in counts.items() if k >= 2}
    assert set(per_class) == anchoring
    assert set(per_class.values()) == {expected_per_class}


@settings(max_examples=80, deadline=None)
@given(sizes=class_sizes, style=label_style, seed=st.integers(0, 2**16))
def test_create_pairs_balanced_and_valid(sizes, style, seed):
    labels = make_labels(sizes, style, seed)
    usable = [s for s in sizes if s >= 2]
    if len(usable) < 2:
        with pytest.raises(ValueError, match="at least 2 classes"):
            create_pairs(labels, seed=seed)
        return
    a, p, n = create_pairs(labels, seed=seed)
    assert a.dtype.kind == "i" and a.shape == p.shape == n.shape
    check_triples(labels, a, p, n, expected_per_class=min(usable) - 1)
    # Consecutive pairing within a shuffled class: no sample anchors twice.
    assert len(np.unique(a)) == len(a)


@settings(max_examples=30, deadline=None)
@given(sizes=class_sizes, seed=st.integers(0, 2**16), cap=st.integers(1, 5))
def test_triplets_per_class_caps(sizes, seed, cap):
    labels = make_labels(sizes, "int", seed)
    usable = [s for s in sizes if s >= 2]
    if len(usable) < 2:
        return
    a, p, n = create_pairs(labels, triplets_per_class=cap, seed=seed)
    check_triples(labels, a, p, n, expected_per_class=min(cap, min(usable) - 1))


@settings(max_examples=30, deadline=None)
@given(sizes=class_sizes, style=label_style, seed=st.integers(0, 2**16))
def test_create_pairs_deterministic(sizes, style, seed):
    labels = make_labels(sizes, style, seed)
    if sum(s >= 2 for s in sizes) < 2:
        return
    first = create_pairs(labels, seed=seed)
    second = create_pairs(labels, seed=seed)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)


def test_negative_class_is_uniform_over_other_classes():
    # Class 0 has 100 members, the others 2: a per-sample draw would pick class 0 most of
    # the time; a per-class draw picks each other class equally often.
    labels = np.repeat(np.arange(4), [100, 2, 2, 2])
    a, p, n = create_pairs(labels, triplets_per_class=1, seed=0)
    negatives = []
    for seed in range(3000):
        a, p, n = create_pairs(labels, triplets_per_class=1, seed=seed)
        negatives.append(labels[n[labels[a] == 1]])
    freq = np.bincount(np.concatenate(negatives), minlength=4) / len(negatives)
    np.testing.assert_allclose(freq[[0, 2, 3]], 1 / 3, atol=0.04)
    assert freq[1] == 0


def test_singletons_warn_and_serve_only_as_negatives(caplog):
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 3])
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        a, p, n = create_pairs(labels, seed=1)
    assert "single sample" in caplog.text
    assert set(labels[a]) == {0, 1}
    assert len(a) == 4  # two anchoring classes, each min(3, 3) - 1 = 2


def test_one_class_or_all_singletons_raise():
    with pytest.raises(ValueError, match="at least 2 classes"):
        create_pairs(np.zeros(10, int))
    with pytest.raises(ValueError, match="at least 2 classes"):
        create_pairs(np.arange(10))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        create_pairs(np.zeros((10, 2), int))


def test_encode_labels_kinds():
    codes, classes = encode_labels(np.array([[7], [3], [7]]))
    assert codes.tolist() == [1, 0, 1] and classes.tolist() == [3, 7]
    codes, classes = encode_labels(["b", "a", "b"])
    assert codes.tolist() == [1, 0, 1] and classes.tolist() == ["a", "b"]
    codes, classes = encode_labels(np.array([1, "x", 1], dtype=object))
    assert codes.tolist() == [0, 1, 0]
    codes, classes = encode_labels(mx.nd.array([2, 2, 5]))
    assert codes.tolist() == [0, 0, 1]


def test_resample_draws_new_triples_reproducibly():
    labels = np.repeat(np.arange(5), 20)
    x = np.random.default_rng(0).random((100, 4, 4)).astype(np.float32)
    ds1, ds2 = TripletDataset(x, labels, seed=3), TripletDataset(x, labels, seed=3)
    first = ds1.triplets.copy()
    np.testing.assert_array_equal(first, ds2.triplets)
    second = ds1.resample()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, ds2.resample())
    assert ds1.x is x  # samples are kept by reference, never copied per triple


def test_getitem_dataloader_and_gather_agree():
    rng = np.random.default_rng(0)
    x = rng.random((60, 5, 3)).astype(np.float32)
    y = np.array([f"c{i % 4}" for i in range(60)])
    ds = TripletDataset(mx.nd.array(x), y, seed=0)
    assert len(ds) == 4 * 14
    item, label = ds[0]
    assert item.shape == (3, 5, 3) and item.dtype == np.float32 and label == 1.0
    a, p, n = ds.triplets[0]
    np.testing.assert_array_equal(item, np.stack([x[a], x[p], x[n]]))

    loader = mx.gluon.data.DataLoader(ds, batch_size=16, shuffle=True)
    batches = list(loader)
    assert batches[0][0].shape == (16, 3, 5, 3) and batches[0][0].dtype == np.float32
    assert sum(b[0].shape[0] for b in batches) == len(ds)

    idx = np.array([5, 0, 17, 17, 55])
    np.testing.assert_array_equal(ds.gather(idx), np.stack([ds[i][0] for i in idx]))


def test_transform_applies_per_sample():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    ds = TripletDataset(x, np.repeat([0, 1], 10), transform=lambda s: s * 2, seed=0)
    a, p, n = ds.triplets[3]
    np.testing.assert_array_equal(ds[3][0], 2 * np.stack([x[a], x[p], x[n]]))


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="same length"):
        TripletDataset(np.zeros((5, 2)), np.zeros(4))


# ----------------------------------------------------------------- label layouts


labels_strategy = st.one_of(
    hnp.arrays(
        np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=30), elements=st.integers(-3, 5)
    ),
    hnp.arrays(
        np.float64, st.integers(0, 30), elements=st.floats(allow_nan=True, allow_infinity=True)
    ),
    hnp.arrays("<U2", st.integers(0, 30), elements=st.sampled_from(["a", "b", "c", ""])),
    hnp.arrays(np.bool_, st.tuples(st.integers(0, 30), st.just(1))),
)


@given(labels=labels_strategy, n=st.none() | st.integers(0, 31), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=2000)
def test_fuzz_triplet_dataset_label_layouts(labels, n, seed):
    """Any label layout, as many samples as labels or not: valid triplets (anchor and
    positive share a class and differ, the negative's class differs) or a ValueError."""
    n = len(labels) if n is None else n
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    try:
        ds = TripletDataset(x, labels, seed=seed)
    except ValueError as e:
        assert "\n" not in str(e)
        return
    flat = np.asarray(labels).reshape(len(x))
    a, p, neg = ds.anchor_idx, ds.positive_idx, ds.negative_idx
    assert len(ds) > 0 and (a != p).all()
    same = lambda i, j: flat[i] == flat[j] or (flat[i] != flat[i] and flat[j] != flat[j])  # noqa: E731
    assert all(same(i, j) for i, j in zip(a, p))
    assert not any(same(i, j) for i, j in zip(a, neg))


def test_triplet_dataset_takes_uint64_labels_near_2_to_the_64():
    y = np.array([2**64 - 1, 2**64 - 2, 5] * 4, dtype=np.uint64)
    ds = TripletDataset(np.arange(12, dtype=np.float32)[:, None], y, seed=0)
    assert ds.classes.dtype == np.uint64
    assert sorted(int(c) for c in ds.classes) == [5, 2**64 - 2, 2**64 - 1]
    assert (ds.classes[ds.labels] == y).all()
    a, p, n = ds.anchor_idx, ds.positive_idx, ds.negative_idx
    assert len(a) > 0 and (y[a] == y[p]).all() and (y[a] != y[n]).all()
