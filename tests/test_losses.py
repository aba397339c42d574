"""Triplet losses: the soft margin, and the hinge under each distance (brute force), with
the same distance as the miner."""

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mxnet import autograd, gluon, nd

from gluon_triplet.config import PRESETS, Config
from gluon_triplet.data.triplets import TripletDataset
from gluon_triplet.nets.zoo import build_model
from gluon_triplet.training.distances import METRICS
from gluon_triplet.training.losses import (
    DistanceTripletLoss,
    SoftMarginTripletLoss,
    triplet_loss,
    triplet_loss_from_config,
)
from gluon_triplet.training.trainer import TripletTrainer


def brute_force(a, p, n, squared):
    """One triplet at a time, float64."""
    out = []
    for x, y, z in zip(a.astype(np.float64), p.astype(np.float64), n.astype(np.float64)):
        d_ap, d_an = ((x - y) ** 2).sum(), ((x - z) ** 2).sum()
        if not squared:
            d_ap, d_an = np.sqrt(d_ap), np.sqrt(d_an)
        out.append(np.log1p(np.exp(d_ap - d_an)))
    return np.array(out)


triples = st.integers(1, 6).flatmap(
    lambda b: st.lists(
        st.lists(st.floats(-3, 3, width=32), min_size=4, max_size=4),
        min_size=3 * b,
        max_size=3 * b,
    )
)


@settings(max_examples=40, deadline=None)
@given(triples, st.booleans())
def test_value_matches_brute_force(rows, squared):
    x = np.array(rows, dtype=np.float32).reshape(3, -1, 4)
    loss = SoftMarginTripletLoss(squared=squared)
    got = loss(nd.array(x[0]), nd.array(x[1]), nd.array(x[2])).asnumpy()
    assert got.shape == (x.shape[1],)
    np.testing.assert_allclose(got, brute_force(*x, squared), rtol=1e-4, atol=1e-5)


def test_large_gaps_stay_finite_and_linear():
    a = nd.array([[0.0, 0.0], [0.0, 0.0]])
    p = nd.array([[100.0, 0.0], [0.0, 0.0]])
    n = nd.array([[0.0, 0.0], [100.0, 0.0]])
    got = SoftMarginTripletLoss().forward(a, p, n).asnumpy()
    # softplus(100) = 100 (no overflow), softplus(-100) = e^-100 (0 in float32).
    np.testing.assert_allclose(got, [100.0, 0.0], rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("squared", [False, True])
def test_gradient_is_finite_and_matches_finite_differences(squared, hybridize):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4)).astype(np.float64)
    x[1, 0] = x[0, 0]  # a == p: d(a, p) = 0, where sqrt's slope is infinite
    x[2, 1] = x[0, 1]  # a == n
    x[1, 2] = x[2, 2] = x[0, 2]  # a == p == n: the padding triplet miners return
    loss = SoftMarginTripletLoss(squared=squared)
    if hybridize:
        loss.hybridize()
    arrays = [nd.array(v, dtype="float64") for v in x]
    for arr in arrays:
        arr.attach_grad()
    with autograd.record():
        out = loss(*arrays).sum()
    out.backward()
    grads = [arr.grad.asnumpy() for arr in arrays]
    assert all(np.isfinite(g).all() for g in grads)
    # Central differences where the loss is smooth (distances away from 0).
    eps = 1e-6
    for role in range(3):
        for i in (3, 4):
            for j in range(4):
                up, down = x.copy(), x.copy()
                up[role, i, j] += eps
                down[role, i, j] -= eps
                numeric = (brute_force(*up, squared).sum() - brute_force(*down, squared).sum()) / (
                    2 * eps
                )
                assert grads[role][i, j] == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def test_trains_like_a_gluon_loss():
    net = gluon.nn.Dense(3)
    net.initialize()
    rng = np.random.default_rng(1)
    a, p, n = (nd.array(rng.normal(size=(8, 5)).astype(np.float32)) for _ in range(3))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    loss_fn = SoftMarginTripletLoss(weight=2.0)
    values = []
    for _ in range(20):
        with autograd.record():
            loss = loss_fn(net(a), net(p), net(n))
        loss.backward()
        trainer.step(8)
        values.append(loss.mean().asscalar())
    assert values[-1] < values[0]


def test_from_config():
    assert isinstance(triplet_loss_from_config(Config(soft_margin=True)), SoftMarginTripletLoss)
    hinge = triplet_loss_from_config(Config(margin=0.3))
    assert type(hinge) is gluon.loss.TripletLoss and hinge._margin == 0.3


def brute(a, p, n, metric, margin):
    def d(x, y):
        if metric == "cosine":
            return 1 - (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        sq = ((x - y) ** 2).sum(1)
        return sq if metric == "squared" else np.sqrt(sq)

    return np.maximum(d(a, p) - d(a, n) + margin, 0)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("hybrid", [False, True])
def test_loss_matches_brute_force(metric, hybrid):
    rng = np.random.default_rng(1)
    a, p, n = rng.normal(size=(3, 50, 4)).astype(np.float32)
    loss = triplet_loss(metric, margin=0.3)
    if hybrid:
        loss.hybridize()
    got = loss(nd.array(a), nd.array(p), nd.array(n)).asnumpy()
    want = brute(a.astype(np.float64), p, n, metric, 0.3)
    assert got.shape == (50,) and 0 < (want > 0).mean() < 1  # both sides of the hinge
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_squared_is_gluons_own_triplet_loss():
    assert type(triplet_loss("squared", 1.0)) is gluon.loss.TripletLoss
    assert isinstance(triplet_loss("cosine", 1.0), DistanceTripletLoss)


@pytest.mark.parametrize("metric", METRICS)
def test_the_trainer_shares_one_distance_between_miner_and_loss(metric):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.repeat(np.arange(4), 10)
    config = Config(model="mlp", miner="batch-hard", distance=metric, pk_samples=4, epochs=1)
    trainer = TripletTrainer(build_model("mlp"), TripletDataset(x, y, seed=0), config, [mx.cpu()])
    miner_distance = trainer.strategy.miner.distance
    assert miner_distance.name == metric
    if metric != "squared":
        assert trainer.loss_fn.distance is miner_distance
    trainer.fit()
    assert np.isfinite(trainer.history[-1]["train"]["loss"])


def test_offline_triplets_train_with_gluons_loss():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.repeat(np.arange(4), 10)
    config = Config(**{**PRESETS["reference"], "epochs": 1, "batch_size": 8})
    trainer = TripletTrainer(build_model("mlp"), TripletDataset(x, y, seed=0), config, [mx.cpu()])
    assert type(trainer.loss_fn) is gluon.loss.TripletLoss
    assert type(trainer.strategy).__name__ == "OfflineTriplets"
