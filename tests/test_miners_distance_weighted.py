"""DistanceWeightedMiner and distance_weights (training/miners/distance_weighted.py)."""

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mxnet import autograd, gluon, nd

from gluon_triplet.training.distances import pairwise_distances
from gluon_triplet.training.miners import (
    MINERS,
    DistanceWeightedMiner,
    distance_weights,
    get_miner,
    mined_loss,
)


def analytic_probabilities(d, dim, margin, d_ap=0.0, cutoff=0.5):
    """Brute force, float64: P(negative j) for one anchor with Euclidean distances d."""
    d = np.asarray(d, dtype=np.float64)
    clipped = np.maximum(d, cutoff)
    log_w = -(dim - 2) * np.log(clipped) - (dim - 3) / 2 * np.log(
        np.maximum(1 - clipped**2 / 4, 1e-6)
    )
    active = d**2 < d_ap**2 + margin
    w = np.where(active, np.exp(log_w - log_w[active].max()), 0.0)
    return w / w.sum()


def on_sphere(distances, dim):
    """Unit vectors: e_0, then one point at each Euclidean distance from e_0."""
    points = [np.eye(dim)[0]]
    for i, d in enumerate(distances):
        cos = 1 - d**2 / 2  # |x - e_0|^2 = 2 - 2 cos
        points.append(cos * np.eye(dim)[0] + np.sqrt(1 - cos**2) * np.eye(dim)[1 + i % (dim - 1)])
    return np.array(points, dtype=np.float32)


@pytest.mark.parametrize("dim", [2, 3, 16, 128])
def test_distance_weights_match_the_formula(dim):
    d = np.array([0.0, 0.2, 0.5, 0.7, 1.0, 1.41, 1.9, 1.999, 2.5], dtype=np.float32)
    got = distance_weights(nd.array(d), dim).asnumpy()
    c = np.maximum(d.astype(np.float64), 0.5)
    want = -(dim - 2) * np.log(c) - (dim - 3) / 2 * np.log(np.maximum(1 - c**2 / 4, 1e-6))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # Below the cutoff every distance weighs the same.
    assert got[0] == got[1] == got[2]
    with pytest.raises(ValueError, match="dim must be >= 2"):
        distance_weights(nd.array(d), 1)
    with pytest.raises(ValueError, match="cutoff must be > 0"):
        distance_weights(nd.array(d), 4, cutoff=0)


def test_sampled_negatives_follow_the_analytic_distribution():
    dim, k, margin = 8, 12, 2.0
    # Negatives at these distances from the anchor point; 1.45 and 1.9 have
    # d^2 >= 0 + margin, i.e. zero loss for a pair at distance 0: never drawn.
    distances = [0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.45, 1.9]
    sphere = on_sphere(distances, dim)
    # K copies of the anchor point (class 0, so every pair has d(a, p) = 0), then one
    # negative per class.
    emb = nd.array(np.concatenate([np.repeat(sphere[:1], k, axis=0), sphere[1:]]))
    labels = nd.array(np.concatenate([np.zeros(k), np.arange(1, len(distances) + 1)]))
    miner = DistanceWeightedMiner(margin=margin)
    mx.random.seed(7)
    counts = np.zeros(len(distances))
    draws = 0
    for _ in range(25):
        a, p, n, w = (o.asnumpy() for o in miner.mine(emb, labels))
        rows = w > 0
        assert (a[rows] < k).all() and (p[rows] < k).all()  # only class 0 has pairs
        np.add.at(counts, n[rows].astype(int) - k, 1)
        draws += rows.sum()
    assert draws == 25 * k * (k - 1)
    d = pairwise_distances(emb, "euclidean").asnumpy()[0, k:]
    expected = analytic_probabilities(d, dim, margin) * draws
    assert counts[-2:].sum() == 0 and expected[-2:].sum() == 0
    live = expected > 0
    chi2 = ((counts[live] - expected[live]) ** 2 / expected[live]).sum()
    # 6 categories, 5 degrees of freedom: P(chi2 > 20.5) = 0.001.
    assert chi2 < 20.5, (counts, expected)
    # The test can fail: uniform sampling over the live negatives is far off.
    uniform = np.full(live.sum(), draws / live.sum())
    assert ((counts[live] - uniform) ** 2 / uniform).sum() > 100


def test_pairs_with_distinct_distances_use_their_own_mask():
    # Two anchors' pairs in one batch: the mask depends on d(a, p), per pair.
    dim, margin = 4, 0.5
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    emb = nd.array(x)
    sq = pairwise_distances(emb).asnumpy()
    miner = DistanceWeightedMiner(margin=margin)
    mx.random.seed(1)
    for _ in range(20):
        a, p, n, w = (o.asnumpy().astype(int) for o in miner.mine(emb, nd.array(labels)))
        for i, j, m, keep in zip(a, p, n, w):
            if keep:
                assert sq[i, m] < sq[i, j] + margin
            else:
                # Dropped pairs: not a pair, or no negative with nonzero loss.
                negs = labels != labels[i]
                if labels[i] == labels[j] and i != j:
                    assert not (sq[i, negs] < sq[i, j] + margin).any()


batches = st.integers(min_value=2, max_value=14).flatmap(
    lambda b: st.tuples(
        st.lists(
            st.lists(st.floats(-1, 1, width=32), min_size=3, max_size=3), min_size=b, max_size=b
        ),
        st.lists(st.integers(0, 3), min_size=b, max_size=b),
        st.sampled_from([0.1, 0.5, 2.0, 5.0]),
        st.sampled_from([None, 1, 7, 40]),
        st.integers(0, 2**31 - 1),
        st.sampled_from(["squared", "euclidean"]),
    )
)


@settings(max_examples=40, deadline=None)
@given(batches)
def test_selected_triplets_are_valid(batch):
    points, labels, margin, max_pairs, seed, metric = batch
    emb = nd.array(np.array(points, dtype=np.float32))
    b = len(labels)
    miner = DistanceWeightedMiner(margin=margin, metric=metric, max_pairs=max_pairs)
    mx.random.seed(seed)
    a, p, n, w = (o.asnumpy() for o in miner.mine(emb, nd.array(labels)))
    assert len(a) == miner.num_triplets(b)
    assert set(np.unique(w)) <= {0.0, 1.0}
    assert a.max(initial=0) < b and p.max(initial=0) < b and n.max(initial=0) < b
    # The nonzero-loss mask is in the miner's metric, the loss's distance.
    dist = pairwise_distances(emb, metric).asnumpy()
    pairs = set()
    for i, j, m, keep in zip(a, p, n, w):
        if keep:
            assert labels[j] == labels[i] and j != i
            assert labels[m] != labels[i]  # never the anchor's label
            assert dist[i, m] < dist[i, j] + np.float32(margin)
            pairs.add((i, j))
    assert len(pairs) == int(w.sum())  # each pair at most once


def test_loss_trains_and_degenerate_batches_are_zero():
    net = gluon.nn.Dense(4)
    net.initialize(mx.init.Uniform(0.1))
    x = nd.array(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))
    loss_fn = gluon.loss.TripletLoss(margin=1.0)
    for labels, some in (([0, 0, 1, 1, 2, 2, 3, 3], True), (list(range(8)), False)):
        with autograd.record():
            emb = net(x)
            a, p, n, w = DistanceWeightedMiner(margin=1.0, max_pairs=16).mine(emb, nd.array(labels))
            loss = mined_loss(loss_fn, emb, a, p, n, w)
        loss.backward()
        grad = net.weight.grad().asnumpy()
        assert np.isfinite(grad).all()
        assert (w.sum().asscalar() > 0) == some
        assert (np.abs(grad).sum() > 0) == some


def test_same_seed_same_sample():
    rng = np.random.default_rng(5)
    emb = nd.array(rng.normal(size=(16, 4)).astype(np.float32))
    labels = nd.array(np.repeat(np.arange(4), 4))
    miner = get_miner("distance-weighted", margin=2.0)
    runs = []
    for seed in (11, 11, 12):
        mx.random.seed(seed)
        runs.append(miner.mine(emb, labels)[2].asnumpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (runs[0] != runs[2]).any()


def test_registry_and_errors():
    assert MINERS["distance-weighted"] is DistanceWeightedMiner
    miner = get_miner("distance-weighted", margin=0.3, metric="euclidean", max_pairs=9)
    assert (miner.margin, miner.metric, miner.num_triplets(100)) == (0.3, "euclidean", 9)
    assert "cutoff=0.5" in repr(miner)
    with pytest.raises(ValueError) as err:
        get_miner("distance-weigted")
    assert "distance-weighted" in str(err.value) and "semi-hard" in str(err.value)
    with pytest.raises(ValueError, match="Euclidean"):
        DistanceWeightedMiner(metric="cosine")
    with pytest.raises(ValueError, match="cutoff must be > 0"):
        DistanceWeightedMiner(cutoff=0.0)
    with pytest.raises(ValueError, match="max_pairs must be >= 1"):
        DistanceWeightedMiner(max_pairs=0)


def test_trainer_learns_with_distance_weighted_sampling():
    from gluon_triplet.config import Config
    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.data.triplets import TripletDataset, create_pairs
    from gluon_triplet.nets.zoo import model_from_config
    from gluon_triplet.training.trainer import TripletTrainer, set_seed

    data = load_dataset("mnist-5k")
    # eval_every 1: the untrained net (epoch 0) is scored on the test split too
    config = Config(model="mlp", miner="distance-weighted", epochs=2, seed=0, eval_every=1)
    set_seed(config.seed)
    net, _ = model_from_config(config, data.x_train.shape[1:], ctx=[mx.cpu()])
    trainer = TripletTrainer(
        net,
        TripletDataset(data.x_train, data.y_train, seed=0),
        config,
        [mx.cpu()],
        test_x=data.x_test,
        test_y=data.y_test,
        test_triplets=create_pairs(data.y_test, seed=0),
    )
    assert isinstance(trainer.miner, DistanceWeightedMiner)
    history = trainer.fit()
    before, after = history[0]["test"], history[-1]["test"]
    assert after["precision_at_1"] > before["precision_at_1"] + 0.02
    assert 0 < history[-1]["train"]["triplets"]


def test_config_refuses_cosine_distance_weighted():
    from gluon_triplet.config import Config, ConfigError

    with pytest.raises(ConfigError, match="distance-weighted.*cosine"):
        Config(miner="distance-weighted", distance="cosine")
    assert Config(miner="distance-weighted", distance="euclidean").miner == "distance-weighted"


@pytest.mark.parametrize("metric, active", [("euclidean", 1.0), ("squared", 0.0)])
def test_the_nonzero_loss_mask_uses_the_losss_distance(metric, active):
    """d(a,p) = 1, d(a,n) = 1.6, margin 0.7: the Euclidean hinge is active (1.6 < 1.7), the
    squared one is not (2.56 >= 1.7); the pair's weight follows the distance it was given."""
    from mxnet import nd

    emb = nd.array([[0.0, 0.0], [1.0, 0.0], [1.6, 0.0]])
    miner = DistanceWeightedMiner(margin=0.7, metric=metric)
    a, p, n, w = miner.mine(emb, nd.array([0, 0, 1]))
    row = 0 * 3 + 1  # the pair (anchor 0, positive 1)
    assert w[row].asscalar() == active
    if active:
        assert (a[row].asscalar(), p[row].asscalar(), n[row].asscalar()) == (0, 1, 2)
