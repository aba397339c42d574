import itertools

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gluon_triplet.data.samplers import PKBatchSampler, pk_epoch_batches


def make_labels(sizes, seed=0):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def check_epoch(sampler, labels):
    """One epoch against the contract; returns the batches as an array."""
    p, k = sampler.p, sampler.k
    batches = list(sampler)
    assert len(batches) == len(sampler)
    batches = np.array(batches)
    assert batches.shape == (len(sampler), p * k)
    classes = labels[batches].reshape(len(batches), p, k)
    assert (classes == classes[:, :, :1]).all()  # K consecutive indices share a class
    assert all(len(set(row)) == p for row in classes[:, :, 0].tolist())  # P distinct classes
    assert set(batches.ravel().tolist()) == set(range(len(labels)))  # every sample, once+
    counts = np.bincount(labels)
    for row, cls in zip(batches.reshape(-1, k), classes[:, :, 0].ravel()):
        # Cyclic queues: no repeated index unless the class is smaller than K.
        assert len(set(row.tolist())) == min(k, counts[cls])
    return batches


layouts = st.tuples(
    st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=9),
    st.integers(min_value=2, max_value=5),
    st.integers(min_value=0, max_value=2**16),
).flatmap(lambda t: st.tuples(st.just(t), st.integers(min_value=2, max_value=len(t[0]))))


@settings(max_examples=60, deadline=None)
@given(layouts)
def test_every_epoch_covers_all_samples_with_p_classes_of_k(layout):
    (sizes, k, seed), p = layout
    labels = make_labels(sizes, seed)
    sampler = PKBatchSampler(labels, p=p, k=k, seed=seed)
    chunks = -(-np.array(sizes) // k)
    # The greedy needs the fewest batches possible: no class twice in a batch, P per batch.
    assert len(sampler) == max(chunks.max(), -(-chunks.sum() // p))
    assert pk_epoch_batches(np.bincount(labels), p, k) == len(sampler)
    for _ in range(2):
        check_epoch(sampler, labels)


def test_dominant_class_and_classes_smaller_than_k():
    sizes = [200, 3, 1, 1, 5, 9, 2]
    labels = make_labels(sizes)
    sampler = PKBatchSampler(labels, p=3, k=4, seed=1)
    assert len(sampler) == 50  # the big class is in every batch: 200 / 4
    batches = check_epoch(sampler, labels)
    big = (labels[batches] == 0).any(axis=1)
    assert big.all()
    # A singleton's chunk is its one index K times.
    singleton = np.flatnonzero(labels == 2)[0]
    rows = batches.reshape(-1, 4)
    mine = rows[(labels[rows] == 2).all(axis=1)]
    assert len(mine) and (mine == singleton).all()


def test_no_top_ups_when_everything_divides():
    labels = make_labels([8] * 6)
    sampler = PKBatchSampler(labels, p=3, k=4, seed=0)
    assert len(sampler) == 4  # 12 chunks / 3
    batches = check_epoch(sampler, labels)
    assert sorted(batches.ravel().tolist()) == list(range(48))  # each sample exactly once


def test_classes_mix_within_an_epoch():
    # Ties are broken at random for every batch, so class pairs are not stuck together.
    labels = make_labels([200] * 10)  # 125 batches of 4 classes
    sampler = PKBatchSampler(labels, p=4, k=4, seed=0)
    batches = np.array(list(sampler))
    pairs = set()
    for row in labels[batches[:, ::4]]:
        pairs.update(itertools.combinations(sorted(row.tolist()), 2))
    assert len(pairs) == 45


def test_largest_classes_first_without_top_ups():
    labels = make_labels([30, 30, 6, 6, 6, 6])
    sampler = PKBatchSampler(labels, p=2, k=2, seed=3)
    assert len(sampler) == 21  # 42 chunks / 2, and the 15 of a big class fit
    batches = sampler.epoch_batches()
    firsts = labels[batches[:, ::2]]
    # No top-ups were needed: every class is served exactly its number of chunks...
    np.testing.assert_array_equal(np.bincount(firsts.ravel()), [15, 15, 3, 3, 3, 3])
    # ...and largest-first serves the two big classes together until they are down to
    # the small classes' 3 chunks: at least 12 batches hold both.
    assert ((firsts == 0).any(axis=1) & (firsts == 1).any(axis=1)).sum() >= 12


def test_deterministic_per_seed_and_reshuffled_per_epoch():
    labels = make_labels([7, 12, 5, 9, 3])
    a = PKBatchSampler(labels, p=3, k=3, seed=42)
    b = PKBatchSampler(labels, p=3, k=3, seed=42)
    first, second = list(a), list(a)
    assert first == list(b) and second == list(b)
    assert first != second
    assert list(PKBatchSampler(labels, p=3, k=3, seed=43)) != first
    # epoch_batches is the same stream as __iter__.
    c = PKBatchSampler(labels, p=3, k=3, seed=42)
    assert c.epoch_batches().tolist() == first


def test_string_labels():
    labels = np.array(["cat", "dog", "eel", "cat", "dog", "eel", "cat"])
    sampler = PKBatchSampler(labels, p=2, k=2, seed=0)
    for batch in sampler:
        kinds = labels[batch]
        assert kinds[0] == kinds[1] and kinds[2] == kinds[3] and kinds[0] != kinds[2]


def test_works_as_dataloader_batch_sampler():
    labels = make_labels([6, 5, 4, 7])
    x = np.arange(len(labels), dtype=np.float32).reshape(-1, 1) * np.ones((1, 3), np.float32)
    dataset = mx.gluon.data.ArrayDataset(x, labels.astype(np.float32))
    sampler = PKBatchSampler(labels, p=2, k=3, seed=0)
    loader = mx.gluon.data.DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == len(sampler)
    seen = set()
    for data, label in loader:
        assert data.shape == (6, 3) and label.shape == (6,)
        lab = label.asnumpy().reshape(2, 3)
        assert (lab == lab[:, :1]).all() and lab[0, 0] != lab[1, 0]
        seen.update(data[:, 0].asnumpy().astype(int).tolist())
    assert seen == set(range(len(labels)))


def test_errors_name_the_numbers():
    labels = make_labels([3, 3, 3])
    with pytest.raises(ValueError, match="p=4 classes per batch, but the labels have only 3"):
        PKBatchSampler(labels, p=4, k=2)
    with pytest.raises(ValueError, match="k must be >= 2.*got 1"):
        PKBatchSampler(labels, p=2, k=1)
    with pytest.raises(ValueError, match="p must be >= 2.*got 1"):
        PKBatchSampler(labels, p=1, k=2)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        PKBatchSampler(np.zeros((3, 2)), p=2, k=2)


def test_a_million_samples_cover_every_sample():
    # Speed is measured by bench/speed.py, not here: only the coverage rule at scale.
    labels = np.random.default_rng(0).integers(0, 10, 1_000_000)
    sampler = PKBatchSampler(labels, p=8, k=4, seed=0)
    batches = sampler.epoch_batches()
    assert batches.shape == (len(sampler), 32)
    assert np.bincount(batches.ravel(), minlength=len(labels)).min() >= 1
