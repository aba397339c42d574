import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mxnet import autograd, gluon, nd

from gluon_triplet.training.distances import pairwise_distances
from gluon_triplet.training.miners import (
    MINERS,
    BatchAllMiner,
    BatchHardMiner,
    SemiHardMiner,
    get_miner,
    mined_loss,
)

ALL_MINERS = [BatchHardMiner, SemiHardMiner, BatchAllMiner]


def line(xs):
    """1-D points as (B, 1) embeddings."""
    return nd.array(np.asarray(xs, dtype=np.float32).reshape(-1, 1))


def mined(miner, emb, labels):
    a, p, n, w = miner.mine(emb, nd.array(labels))
    return a.asnumpy(), p.asnumpy(), n.asnumpy(), w.asnumpy()


def selected(a, p, n, w):
    return [(int(i), int(j), int(k)) for i, j, k, x in zip(a, p, n, w) if x]


# --- brute force, one Python loop per triplet, float32 arithmetic as on device -----------


def brute_force(dist, labels, margin):
    """Hardest p/n distances per anchor, semi-hard negative per pair, batch-all set.

    The semi-hard negative of ``(a, p)`` is ``(distance, index)``: the nearest negative
    inside the window, else the nearest; equal distances go to the lowest index."""
    b = len(labels)
    margin = np.float32(margin)
    hard, semi, active = {}, {}, set()
    for a in range(b):
        pos = [p for p in range(b) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(b) if labels[n] != labels[a]]
        if not pos or not neg:
            continue
        hard[a] = (max(dist[a, p] for p in pos), min(dist[a, n] for n in neg))
        for p in pos:
            limit = np.float32(dist[a, p] + margin)
            window = [(dist[a, n], n) for n in neg if dist[a, p] < dist[a, n] < limit]
            semi[a, p] = min(window) if window else min((dist[a, n], n) for n in neg)
            active.update((a, p, n) for n in neg if dist[a, n] < limit)
    return hard, semi, active


batches = st.integers(min_value=2, max_value=12).flatmap(
    lambda b: st.tuples(
        # Integer coordinates: squared distances are exact, so ties really happen.
        st.lists(st.lists(st.integers(-3, 3), min_size=2, max_size=2), min_size=b, max_size=b),
        st.lists(st.integers(0, 3), min_size=b, max_size=b),
        st.sampled_from([0.5, 1.0, 2.0, 3.5]),
    )
)


@settings(max_examples=40, deadline=None)
@given(batches)
def test_miners_match_brute_force(batch):
    points, labels, margin = batch
    emb = nd.array(np.array(points, dtype=np.float32))
    dist = pairwise_distances(emb).asnumpy()
    hard, semi, active = brute_force(dist, labels, margin)
    b = len(labels)

    a, p, n, w = mined(BatchHardMiner(margin), emb, labels)
    assert len(a) == b
    assert {int(i) for i in np.flatnonzero(w)} == set(hard)
    for i, j, k in selected(a, p, n, w):
        assert labels[j] == labels[i] and j != i and labels[k] != labels[i]
        assert (dist[i, j], dist[i, k]) == hard[i]  # distances: robust to tied indices

    a, p, n, w = mined(SemiHardMiner(margin), emb, labels)
    assert len(a) == b * b
    rows = selected(a, p, n, w)
    assert {(i, j) for i, j, _ in rows} == set(semi)
    for i, j, k in rows:  # the same negative, ties included
        assert labels[k] != labels[i] and (dist[i, k], k) == semi[i, j]
    # Compact rows: the valid pairs in (a, p) order, each with the same negative.
    compact = selected(*mined(SemiHardMiner(margin, max_pairs=b * b), emb, labels))
    assert compact == [(i, j, semi[i, j][1]) for i, j in sorted(semi)]

    miner = BatchAllMiner(margin, max_triplets=4 * b)
    a, p, n, w = mined(miner, emb, labels)
    assert len(a) == 4 * b
    rows = selected(a, p, n, w)
    assert len(rows) == min(len(active), 4 * b)
    assert len(set(rows)) == len(rows) and set(rows) <= active
    if len(active) <= 4 * b:
        assert set(rows) == active


def test_semi_hard_ties_go_to_the_lowest_index_in_large_batches():
    """Rows longer than 16 are where a sort's order among equal keys is unspecified
    (introsort): equal distances must still go to the lowest index, as brute force."""
    rng = np.random.default_rng(5)
    for b, d in ((48, 1), (96, 2), (160, 2)):
        emb = nd.array(rng.integers(-2, 3, size=(b, d)).astype(np.float32))
        labels = np.repeat(np.arange(4), b // 4)
        dist = pairwise_distances(emb).asnumpy()
        _, semi, _ = brute_force(dist, labels, 1.0)
        rows = selected(*mined(SemiHardMiner(1.0, max_pairs=b * b), emb, labels))
        assert rows == [(i, j, semi[i, j][1]) for i, j in sorted(semi)]


# --- the block layout (P x K batches) -----------------------------------------------------

pk_batches = st.tuples(
    st.integers(2, 5),  # P
    st.integers(2, 5),  # K
    st.integers(1, 3),  # D
    st.integers(0, 4),  # padding rows beyond the P * K * (K - 1) pairs
    st.sampled_from(["squared", "euclidean", "cosine"]),
    st.sampled_from([0.5, 1.0, 3.5]),
    st.integers(0, 2**32 - 1),
)


class _Select(gluon.HybridBlock):
    def __init__(self, miner, b, block):
        super().__init__()
        self.miner, self.b, self.block = miner, b, block

    def hybrid_forward(self, F, emb, labels):
        return self.miner.select(F, F.BlockGrad(emb), labels, self.b, self.block)


@settings(max_examples=40, deadline=None)
@given(pk_batches)
def test_semi_hard_block_layout_gives_the_same_rows(case):
    """Told the batch is P blocks of K (block=K), semi-hard lists the pairs from the layout
    instead of ranking B * B flags: the rows are the same to the bit, ties included
    (integer coordinates tie often), imperatively and inside a hybridized graph."""
    p, k, d, padding, metric, margin, seed = case
    rng = np.random.default_rng(seed)
    b = p * k
    emb = nd.array(rng.integers(-2, 3, size=(b, d)).astype(np.float32))
    labels = nd.array(np.repeat(rng.permutation(9)[:p], k), dtype=rng.choice(["float32", "int32"]))
    miner = SemiHardMiner(margin, metric, max_pairs=b * (k - 1) + padding)
    assert miner.uses_blocks(b, k)
    want = [o.asnumpy() for o in miner.mine(emb, labels)]
    step = _Select(miner, b, k)
    step.hybridize(static_alloc=True, static_shape=True)
    for got in (miner.mine(emb, labels, block=k), step(emb, labels)):
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g.asnumpy(), w)
    dist = miner.distance.pairwise(emb).asnumpy()
    _, semi, _ = brute_force(dist, labels.asnumpy(), margin)
    assert selected(*want) == [(i, j, semi[i, j][1]) for i, j in sorted(semi)]


def test_block_layout_is_checked_and_used_only_where_it_applies():
    emb = nd.array(np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32))
    miner = SemiHardMiner(max_pairs=12)
    for labels in ([0, 0, 1, 1, 0, 0], [0, 0, 1, 2, 2, 2]):  # a label twice; a mixed block
        with pytest.raises(ValueError, match="block=2: the labels are not 3 blocks of 2"):
            miner.mine(emb, nd.array(labels), block=2)
    assert miner.uses_blocks(6, 2) and miner.uses_blocks(6, 3)
    assert not miner.uses_blocks(6, None) and not miner.uses_blocks(6, 4)  # 4 does not divide 6
    assert not miner.uses_blocks(6, 6)  # one block: no negatives
    assert not SemiHardMiner(max_pairs=5).uses_blocks(6, 2)  # 6 pairs, room for 5: sampled
    assert not SemiHardMiner().uses_blocks(6, 2)  # B * B rows
    assert not BatchHardMiner().uses_blocks(6, 2)
    # A miner without a block path ignores the hint.
    labels = nd.array([0, 0, 1, 1, 2, 2])
    for got, want in zip(
        BatchHardMiner().mine(emb, labels, block=2), BatchHardMiner().mine(emb, labels)
    ):
        np.testing.assert_array_equal(got.asnumpy(), want.asnumpy())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 200),
    st.integers(0, 2**32 - 1),
)
def test_search_sorted_matches_numpy(rows, length, seed):
    from gluon_triplet.training.miners.selection import search_sorted

    rng = np.random.default_rng(seed)
    sorted_rows = rng.integers(0, 9, size=(rows, length)).astype(np.float32)
    sorted_rows[:, length - int(rng.integers(0, length + 1)) :] = np.inf  # a padded tail
    sorted_rows.sort(axis=1)
    queries = rng.integers(-1, 10, size=40).astype(np.float32)
    rows_of = rng.integers(0, rows, size=40)
    got = search_sorted(
        nd,
        nd.array(sorted_rows.reshape(-1)),
        nd.array(queries),
        nd.array(rows_of * length),
        length,
        "float32",
        {"ctx": mx.cpu()},
    ).asnumpy()
    want = [np.searchsorted(sorted_rows[r], q, side="right") for r, q in zip(rows_of, queries)]
    np.testing.assert_array_equal(got, want)


# --- distances ----------------------------------------------------------------------------


def test_distances_match_numpy_for_all_metrics():
    x = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
    x[3] = 0  # a zero row: cosine treats it as orthogonal
    diff = x[:, None, :].astype(np.float64) - x[None, :, :]
    sq = (diff**2).sum(-1)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    cos = (x @ x.T) / np.maximum(np.outer(norms, norms), 1e-24)
    cos_dist = 1 - cos
    np.fill_diagonal(cos_dist, 0)
    expected = {"squared": sq, "euclidean": np.sqrt(sq), "cosine": cos_dist}
    for metric, want in expected.items():
        got = pairwise_distances(nd.array(x), metric).asnumpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=metric)
        assert (got >= 0).all() and (np.diag(got) == 0).all()
        np.testing.assert_allclose(got, got.T, atol=1e-6)
    assert pairwise_distances(nd.array(x), "cosine").asnumpy()[3, 0] == pytest.approx(1.0)


def test_distance_gradient_is_finite_at_zero_distance():
    x = nd.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])  # duplicate rows and a zero row
    for metric in ("squared", "euclidean", "cosine"):
        x.attach_grad()
        with autograd.record():
            d = pairwise_distances(x, metric).sum()
        d.backward()
        assert np.isfinite(x.grad.asnumpy()).all(), metric


def test_distance_errors():
    with pytest.raises(ValueError, match=r"\(B, D\).*\(4,\)"):
        pairwise_distances(nd.zeros((4,)))
    with pytest.raises(ValueError, match="choose one of: squared, euclidean, cosine"):
        pairwise_distances(nd.zeros((4, 2)), "manhattan")
    with pytest.raises(ValueError, match="NDArray"):
        pairwise_distances(np.zeros((4, 2)))


# --- hand-made cases -----------------------------------------------------------------------

# Points 0, 1, 2, 5, 7 with labels A A B B A, and a lone C far away at 20.
LINE = [0, 1, 2, 5, 7, 20]
LINE_LABELS = [0, 0, 1, 1, 0, 2]


def test_batch_hard_on_a_line():
    a, p, n, w = mined(BatchHardMiner(), line(LINE), LINE_LABELS)
    np.testing.assert_array_equal(a, [0, 1, 2, 3, 4, 5])
    # farthest same-label point / nearest other-label point (squared distances)
    np.testing.assert_array_equal(p[:5], [4, 4, 3, 2, 0])
    np.testing.assert_array_equal(n[:5], [2, 2, 1, 4, 3])
    np.testing.assert_array_equal(w, [1, 1, 1, 1, 1, 0])  # C has no positive
    assert (p[5], n[5]) == (5, 5)  # padding points at the anchor itself


def test_batch_hard_other_metrics_same_choice_on_a_line():
    for metric in ("euclidean", "squared"):
        _, p, n, _ = mined(BatchHardMiner(metric=metric), line(LINE), LINE_LABELS)
        np.testing.assert_array_equal(p[:5], [4, 4, 3, 2, 0])
        np.testing.assert_array_equal(n[:5], [2, 2, 1, 4, 3])


def test_semi_hard_picks_nearest_negative_inside_the_margin():
    # anchor 0 and positive 1 (label A); negatives at 0.5 (hard), 1.1 and 1.2 (semi-hard
    # for margin 1: squared distances 1.21 and 1.44 in (1, 2)) and 3 (easy).
    emb = line([0.0, 1.0, 0.5, 1.2, 1.1, 3.0])
    labels = [0, 0, 1, 1, 1, 1]
    a, p, n, w = mined(SemiHardMiner(margin=1.0), emb, labels)
    b = 6
    row = 0 * b + 1
    assert (a[row], p[row], n[row], w[row]) == (0, 1, 4, 1)
    # Pairs among the negatives' class are valid too; pairs across classes are padding.
    assert w.sum() == 2 + 4 * 3
    assert w[0 * b + 2] == 0 and (a[2], p[2], n[2]) == (0, 0, 0)


def test_semi_hard_falls_back_to_the_hardest_negative():
    emb = line([0.0, 1.0, 0.5, 1.2, 1.1, 3.0])
    labels = [0, 0, 1, 1, 1, 1]
    # margin 0.1: the window (1, 1.1) holds no negative -> hardest negative, 0.5 (index 2)
    _, _, n, w = mined(SemiHardMiner(margin=0.1), emb, labels)
    assert (n[1], w[1]) == (2, 1)
    # All negatives closer than the positive: fallback too.
    _, _, n, _ = mined(SemiHardMiner(margin=1.0), line([0.0, 5.0, 1.0, 2.0]), [0, 0, 1, 1])
    assert n[1] == 2


def test_semi_hard_compact_rows():
    emb = line([0.0, 1.0, 0.5, 1.2, 1.1, 3.0])
    labels = [0, 0, 1, 1, 1, 1]
    full = selected(*mined(SemiHardMiner(margin=1.0), emb, labels))
    a, p, n, w = mined(SemiHardMiner(margin=1.0, max_pairs=20), emb, labels)
    assert len(a) == 20
    assert selected(a, p, n, w) == full  # all 14 valid pairs first, in (a, p) order
    assert w[:14].all() and not w[14:].any()
    a, p, n, w = mined(SemiHardMiner(margin=1.0, max_pairs=5), emb, labels)
    rows = selected(a, p, n, w)
    assert len(rows) == 5 == len(set(rows)) and set(rows) <= set(full)


def test_batch_all_on_a_line():
    # A A B at 0, 1, 3, margin 3.5, squared distances: (0, 1, 2) has 1 - 9 + 3.5 < 0,
    # (1, 0, 2) has 1 - 4 + 3.5 > 0, and B has no positive. Only (1, 0, 2) is active.
    emb = line([0.0, 1.0, 3.0])
    a, p, n, w = mined(BatchAllMiner(margin=3.5), emb, [0, 0, 1])
    assert len(a) == 12  # 4 * B
    assert selected(a, p, n, w) == [(1, 0, 2)]
    assert (a[1:] == 0).all() and (p[1:] == 0).all() and (n[1:] == 0).all()


def test_batch_all_samples_distinct_active_triplets_when_there_are_more():
    rng = np.random.default_rng(1)
    emb = nd.array(rng.normal(size=(24, 3)).astype(np.float32))
    labels = np.repeat(np.arange(4), 6)
    dist = pairwise_distances(emb).asnumpy()
    _, _, active = brute_force(dist, labels, 4.0)
    assert len(active) > 40
    mx.random.seed(3)
    rows = selected(*mined(BatchAllMiner(margin=4.0, max_triplets=40), emb, labels))
    assert len(rows) == 40 == len(set(rows)) and set(rows) <= active
    # Systematic sampling spreads the sample over the anchors.
    assert len({r[0] for r in rows}) >= 12


# --- degenerate batches ----------------------------------------------------------------


@pytest.mark.parametrize("labels", [list(range(6)), [7] * 6], ids=["all-distinct", "one-label"])
@pytest.mark.parametrize("miner_cls", ALL_MINERS)
def test_no_valid_triplet_gives_zero_loss_and_finite_gradient(miner_cls, labels):
    net = gluon.nn.Dense(4)
    net.initialize(mx.init.Uniform(0.1))
    x = nd.array(np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32))
    loss_fn = gluon.loss.TripletLoss(margin=1.0)
    with autograd.record():
        emb = net(x)
        a, p, n, w = miner_cls(margin=1.0).mine(emb, nd.array(labels))
        loss = mined_loss(loss_fn, emb, a, p, n, w)
    loss.backward()
    assert w.sum().asscalar() == 0
    assert loss.asscalar() == 0
    grad = net.weight.grad().asnumpy()
    assert np.isfinite(grad).all() and (grad == 0).all()


def test_mined_loss_is_the_weighted_mean_and_trains():
    rng = np.random.default_rng(2)
    x = nd.array(rng.normal(size=(12, 3)).astype(np.float32))
    labels = nd.array(np.repeat(np.arange(3), 4))
    x.attach_grad()
    loss_fn = gluon.loss.TripletLoss(margin=1.0)
    with autograd.record():
        a, p, n, w = BatchHardMiner().mine(x, labels)
        loss = mined_loss(loss_fn, x, a, p, n, w)
    loss.backward()
    xa = x.asnumpy()
    ai, pi, ni = a.asnumpy(), p.asnumpy(), n.asnumpy()
    per = np.maximum(((xa[ai] - xa[pi]) ** 2).sum(1) - ((xa[ai] - xa[ni]) ** 2).sum(1) + 1.0, 0)
    assert loss.asscalar() == pytest.approx(per.mean(), rel=1e-5)
    assert np.isfinite(x.grad.asnumpy()).all() and np.abs(x.grad.asnumpy()).sum() > 0

    # Weights: padding rows are ignored, the mean is over the weight sum.
    w2 = nd.array([1, 0] * 6)
    got = mined_loss(loss_fn, x, a, p, n, w2).asscalar()
    assert got == pytest.approx(per[::2].mean(), rel=1e-5)


def test_mined_loss_shape_errors():
    x = nd.zeros((4, 2))
    idx = nd.zeros((3,), dtype="int32")
    with pytest.raises(ValueError, match=r"all be \(M,\)"):
        mined_loss(gluon.loss.TripletLoss(), x, idx, idx, idx, nd.zeros((2,)))


# --- contract: shapes, types, inputs -------------------------------------------------------


@pytest.mark.parametrize("miner_cls", ALL_MINERS)
def test_fixed_output_shapes_and_types(miner_cls):
    miner = miner_cls()
    rng = np.random.default_rng(0)
    emb = nd.array(rng.normal(size=(8, 4)).astype(np.float32))
    m = miner.num_triplets(8)
    for labels in ([0] * 8, list(range(8)), [0, 0, 1, 1, 2, 2, 3, 3]):
        out = miner.mine(emb, nd.array(labels, dtype="int32"))
        assert [o.shape for o in out] == [(m,)] * 4
        assert [o.dtype for o in out] == [np.int32] * 3 + [np.float32]
        assert all(o.context == emb.context for o in out)
        assert set(np.unique(out[3].asnumpy())) <= {0.0, 1.0}


def test_label_inputs_and_errors():
    emb = line(LINE)
    want = mined(BatchHardMiner(), emb, LINE_LABELS)
    for labels in (
        nd.array(LINE_LABELS, dtype="int32"),
        nd.array(np.array(LINE_LABELS).reshape(-1, 1)),
        np.array(LINE_LABELS),
    ):
        got = [o.asnumpy() for o in BatchHardMiner().mine(emb, labels)]
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g, e)
    with pytest.raises(ValueError, match=r"labels must have shape \(B,\) = \(6,\).*\(5,\)"):
        BatchHardMiner().mine(emb, nd.array(LINE_LABELS[:5]))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        BatchHardMiner().mine(nd.zeros((6, 2, 2)), nd.array(LINE_LABELS))
    with pytest.raises(ValueError, match="max_triplets must be >= 1"):
        BatchAllMiner(max_triplets=0)
    with pytest.raises(ValueError, match="choose one of"):
        SemiHardMiner(metric="l1")


def test_mining_is_not_recorded():
    x = line(LINE)
    x.attach_grad()
    with autograd.record():
        a, p, n, w = SemiHardMiner().mine(x, nd.array(LINE_LABELS))
    # Nothing from the selection joins the graph: the outputs have no gradient history.
    for out in (a, p, n, w):
        with pytest.raises(mx.base.MXNetError):
            out.backward()


# --- registry -----------------------------------------------------------------------------


def test_get_miner_registry():
    assert set(MINERS) == {"batch-hard", "semi-hard", "batch-all", "distance-weighted"}
    miner = get_miner("batch-all", margin=0.5, metric="cosine", max_triplets=7)
    assert isinstance(miner, BatchAllMiner)
    assert (miner.margin, miner.metric, miner.num_triplets(100)) == (0.5, "cosine", 7)
    assert isinstance(get_miner("semi-hard"), SemiHardMiner)
    assert get_miner("offline") is None
    with pytest.raises(ValueError) as err:
        get_miner("hardest")
    assert "'hardest'" in str(err.value)
    assert "choose one of: batch-all, batch-hard, distance-weighted, offline, semi-hard" in str(
        err.value
    )
