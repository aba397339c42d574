import itertools
import json

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gluon_triplet.data.samplers import PKBatchSampler


def make_labels(sizes, seed=0):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def check_epochs(sampler, labels, epochs=3):
    """Several epochs against the contract, brute force; returns the batches, stacked."""
    p, k = sampler.p, sampler.k
    counts = np.bincount(labels)
    n_classes = len(counts)
    epoch_list = []
    for _ in range(epochs):
        batches = list(sampler)
        assert len(batches) == len(sampler) == max(1, -(-len(labels) // (p * k)))
        epoch_list.append(np.array(batches))
    batches = np.concatenate(epoch_list)
    assert batches.shape[1] == p * k
    classes = labels[batches].reshape(len(batches), p, k)
    assert (classes == classes[:, :, :1]).all()  # K consecutive indices share a class
    assert all(len(set(row)) == p for row in classes[:, :, 0].tolist())  # P distinct classes
    # Classes go round in passes: every C consecutive class slots are every class once.
    slots = classes[:, :, 0].ravel()
    whole = len(slots) - len(slots) % n_classes
    for block in slots[:whole].reshape(-1, n_classes):
        assert sorted(block.tolist()) == list(range(n_classes))
    for c in range(n_classes):
        chunks = batches.reshape(-1, k)[slots == c]
        for chunk in chunks:  # no repeat inside a chunk unless the class is smaller than K
            assert len(set(chunk.tolist())) == min(k, counts[c])
        # Members go round in passes across epochs: every n_c in a row are the class.
        stream = chunks.ravel()
        whole = len(stream) - len(stream) % counts[c]
        members = sorted(np.flatnonzero(labels == c).tolist())
        for block in stream[:whole].reshape(-1, counts[c]):
            assert sorted(block.tolist()) == members
    return epoch_list


layouts = st.tuples(
    st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=9),
    st.integers(min_value=2, max_value=8),
    st.integers(min_value=0, max_value=2**16),
).flatmap(lambda t: st.tuples(st.just(t), st.integers(min_value=2, max_value=len(t[0]))))


@settings(max_examples=80, deadline=None)
@given(layouts)
def test_epochs_are_class_balanced_passes_with_p_classes_of_k(layout):
    (sizes, k, seed), p = layout
    labels = make_labels(sizes, seed)
    check_epochs(PKBatchSampler(labels, p=p, k=k, seed=seed), labels)


def test_an_epoch_is_one_pass_worth_of_samples_whatever_the_class_sizes():
    sizes = [200, 3, 1, 1, 5, 9, 2]
    labels = make_labels(sizes)
    sampler = PKBatchSampler(labels, p=3, k=4, seed=1)
    assert len(sampler) == 19  # ceil(221 / 12), not the big class's 200 / 4 = 50
    epochs = check_epochs(sampler, labels, epochs=6)
    # The big class is served as often as the others and goes through its members over
    # epochs: after 6 epochs of 19 batches x 3 classes, 342 slots / 7 classes each.
    slots = labels[np.concatenate(epochs)[:, ::4]]
    served = np.bincount(slots.ravel())
    assert served.max() - served.min() <= 1 and served.sum() == 6 * 19 * 3
    # A singleton's chunk is its one index K times.
    singleton = np.flatnonzero(labels == 2)[0]
    rows = np.concatenate(epochs).reshape(-1, 4)
    mine = rows[(labels[rows] == 2).all(axis=1)]
    assert len(mine) and (mine == singleton).all()


def test_each_sample_exactly_once_when_everything_divides():
    labels = make_labels([8] * 6)
    sampler = PKBatchSampler(labels, p=3, k=4, seed=0)
    assert len(sampler) == 4  # 48 samples / 12
    for batches in check_epochs(sampler, labels, epochs=3):
        assert sorted(batches.ravel().tolist()) == list(range(48))


def test_a_balanced_set_sees_nearly_every_sample_each_epoch():
    labels = make_labels([101] * 10)
    sampler = PKBatchSampler(labels, p=10, k=16, seed=0)
    assert len(sampler) == 7  # ceil(1010 / 160): the old rule gave max(7, ceil(70/10)) = 7
    seen = np.unique(sampler.epoch_batches())
    assert len(seen) == 1010  # 1120 slots: every sample, 110 of them twice


def test_classes_mix_within_an_epoch():
    # Each pass over the classes is a new shuffle, so class pairs are not stuck together.
    labels = make_labels([200] * 10)  # 125 batches of 4 classes
    sampler = PKBatchSampler(labels, p=4, k=4, seed=0)
    batches = np.array(list(sampler))
    pairs = set()
    for row in labels[batches[:, ::4]]:
        pairs.update(itertools.combinations(sorted(row.tolist()), 2))
    assert len(pairs) == 45


def test_state_dict_continues_the_same_epochs():
    labels = make_labels([30, 7, 5, 19, 2, 11])
    a = PKBatchSampler(labels, p=3, k=4, seed=5)
    a.epoch_batches()
    b = PKBatchSampler(labels, p=3, k=4, seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    b._rng.bit_generator.state = a._rng.bit_generator.state
    for _ in range(3):
        np.testing.assert_array_equal(a.epoch_batches(), b.epoch_batches())
    with pytest.raises(ValueError, match="other labels"):
        PKBatchSampler(labels[:-1], p=3, k=4).load_state_dict(a.state_dict())


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
    for data, label in itertools.chain(loader, loader):  # two epochs
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


def test_a_million_samples_in_about_one_pass():
    # Speed is measured by bench/speed.py, not here: only the coverage rule at scale.
    labels = np.random.default_rng(0).integers(0, 10, 1_000_000)
    sampler = PKBatchSampler(labels, p=8, k=4, seed=0)
    batches = sampler.epoch_batches()
    assert batches.shape == (len(sampler), 32) == (31250, 32)
    # One pass's worth: each class is served 31250 * 8 / 10 chunks of 4, 100,000 samples;
    # a class larger than that leaves the rest for the next epoch, a smaller one repeats.
    seen = np.bincount(batches.ravel(), minlength=len(labels))
    sizes = np.bincount(labels)
    assert (seen == 0).sum() == np.maximum(sizes - 100_000, 0).sum()
    assert seen.max() == 2 and (seen >= 1).sum() == np.minimum(sizes, 100_000).sum()
