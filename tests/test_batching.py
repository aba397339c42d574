"""Batch strategies: what each way to train draws, divides by and checkpoints."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from gluon_triplet.batching import (
    OfflineTriplets,
    OnlineMining,
    check_batch_fits,
    make_strategy,
)
from gluon_triplet.config import PRESETS, Config, ConfigError
from gluon_triplet.model import build_model
from gluon_triplet.triplets import TripletDataset


@pytest.fixture
def train_set():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    return TripletDataset(x, np.repeat(np.arange(4), 15), seed=0)


def offline(**kw):
    return Config(**{**PRESETS["reference"], **kw})


def test_offline_batches_cover_every_triplet_in_full_batches(train_set):
    s = make_strategy(build_model("mlp"), train_set, offline(batch_size=16), [mx.cpu()])
    assert isinstance(s, OfflineTriplets)
    batches = s.batches().asnumpy()
    assert batches.shape == (s.num_batches, 16, 3) and s.num_batches == -(-len(train_set) // 16)
    rows = {tuple(r) for r in batches.reshape(-1, 3)}
    assert rows == {tuple(r) for r in train_set.triplets}  # topped up, nothing skipped
    assert s.divisor(nd.array(batches[0]), [None]) == 16
    assert set(s.generators()) == {"batch_order", "triplets"}


def test_workers_share_an_epoch_without_overlap(train_set):
    shares = [
        make_strategy(build_model("mlp"), train_set, offline(batch_size=8), [mx.cpu()], 2, r)
        for r in (0, 1)
    ]
    a, b = (s.batches().asnumpy() for s in shares)  # same seed: the same epoch
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert shares[0].num_batches == len(a) == -(-len(train_set) // 16)


def test_online_batches_are_p_by_k_and_the_divisor_counts_slices(train_set):
    config = Config(model="mlp", miner="batch-hard", pk_classes=3, pk_samples=4)
    s = make_strategy(build_model("mlp"), train_set, config, [mx.cpu()])
    assert isinstance(s, OnlineMining)
    batches = s.batches().asnumpy()
    assert batches.shape == (s.num_batches, 12)
    labels = train_set.labels[batches[0]].reshape(3, 4)
    assert (labels == labels[:, :1]).all() and len(set(labels[:, 0])) == 3
    assert s.divisor(nd.array(batches[0]), [None, None]) == 2
    assert set(s.generators()) == {"batch_order", "triplets", "pk_sampler"}


def test_check_batch_fits(train_set):
    with pytest.raises(ConfigError, match="--batch-size 1000 is larger than the"):
        check_batch_fits(offline(batch_size=1000), train_set)
    with pytest.raises(ConfigError, match="--pk-classes 5 asks for more classes"):
        check_batch_fits(Config(pk_classes=5), train_set)
    check_batch_fits(Config(pk_classes=4), train_set)
