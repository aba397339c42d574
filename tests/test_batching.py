"""Batch strategies: what each way to train draws, divides by and checkpoints."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from gluon_triplet.config import PRESETS, Config, ConfigError
from gluon_triplet.data.triplets import TripletDataset
from gluon_triplet.nets.zoo import build_model
from gluon_triplet.training.batching import (
    OfflineTriplets,
    OnlineMining,
    check_batch_fits,
    make_strategy,
)


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


def test_online_mining_tells_the_miner_the_p_by_k_layout_only_for_whole_classes(train_set):
    from gluon_triplet.training.batching import _check_layout

    config = Config(model="mlp", miner="semi-hard", pk_classes=3, pk_samples=4)
    for contexts, block in (([mx.cpu()], 4), ([mx.cpu(0), mx.cpu(1), mx.cpu(2)], 4)):
        s = make_strategy(build_model("mlp"), train_set, config, contexts)
        assert s.block == block and s.step_for(12 // len(contexts)).block == block
    # Five slices of 3, 3, 2, 2, 2 rows cut through classes: no layout hint.
    five = [mx.cpu(i) for i in range(5)]
    assert make_strategy(build_model("mlp"), train_set, config, five).block is None
    labels = np.array([[0, 0, 1, 1], [2, 2, 3, 3]])
    _check_layout(labels, 2)
    for bad in ([[0, 0, 0, 0]], [[0, 1, 1, 1]]):
        with pytest.raises(RuntimeError, match="not whole blocks of distinct classes"):
            _check_layout(np.array(bad), 2)


def test_check_batch_fits(train_set):
    with pytest.raises(ConfigError, match="--batch-size 1000 is larger than the"):
        check_batch_fits(offline(batch_size=1000), train_set)
    with pytest.raises(ConfigError, match="--pk-classes 5 asks for more classes"):
        check_batch_fits(Config(pk_classes=5), train_set)
    check_batch_fits(Config(pk_classes=4), train_set)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"miner": "distance-weighted"}, {"miner": "batch-hard", "pk_samples": 4}],
    ids=["default", "distance-weighted", "batch-hard"],
)
def test_mined_step_graph_trains_to_the_bit_like_the_imperative_path(overrides):
    """The step graph (gather, net, miner, loss in one hybridized graph) takes the same
    steps as the imperative path it replaced: EmbedStep-style embedding, ``Miner.mine``
    and the loss on the gathered rows, back-propagated from the mean over the mined."""
    from mxnet import autograd, gluon

    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.nets.zoo import model_from_config
    from gluon_triplet.training.trainer import set_seed

    data = load_dataset("mnist-5k")
    x, y = data.x_train[:600], data.y_train[:600]
    config = Config(**{"seed": 0, **overrides})  # the default recipe: CNN, semi-hard, Adam
    nets, trainers = [], []
    for _ in range(2):
        set_seed(0)
        net, _ = model_from_config(config, x.shape[1:], ctx=[mx.cpu()])
        net(nd.array(net.prepare_input(x[:2])))  # deferred initialisation, same draws
        nets.append(net)
        trainers.append(gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01}))
    strategy = make_strategy(nets[0], TripletDataset(x, y, seed=0), config, [mx.cpu()])
    miner, loss_fn = strategy.miner, strategy.loss_fn
    data_nd, labels_nd = strategy.data[0], strategy.feed.labels[0]
    for step, idx in enumerate(strategy.batches()[:3]):
        mx.random.seed(step)
        with autograd.record():
            objective, stats = strategy.forward(0, idx)
        objective.backward()
        trainers[0].step(1)

        mx.random.seed(step)
        with autograd.record():
            emb = nets[1](nd.take(data_nd, idx))
            with autograd.pause():
                a, p, n, weight = miner.mine(emb.detach(), nd.take(labels_nd, idx))
            loss = loss_fn(nd.take(emb, a), nd.take(emb, p), nd.take(emb, n)) * weight
            expected = loss.sum() / nd.maximum(weight.sum(), 1.0)
        expected.backward()
        trainers[1].step(1)
        assert objective.asnumpy().tolist() == expected.asnumpy().tolist()
        sums = [loss.sum().asscalar(), (loss > 0).sum().asscalar(), weight.sum().asscalar()]
        assert stats.asnumpy().tolist() == sums
    for fused, imperative in zip(
        nets[0].collect_params().values(), nets[1].collect_params().values()
    ):
        np.testing.assert_array_equal(fused.data().asnumpy(), imperative.data().asnumpy())
