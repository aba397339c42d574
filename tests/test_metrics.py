import json
import logging
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gluon_triplet.evaluation import neighbours, retrieval
from gluon_triplet.evaluation.clustering import ami, clustering_metrics, kmeans_clusters, nmi
from gluon_triplet.evaluation.metrics import (
    active_triplet_fraction,
    evaluate_embeddings,
    strict_triplet_accuracy,
    triplet_distances,
)
from gluon_triplet.evaluation.retrieval import (
    gallery_retrieval_metrics,
    per_class_precision_at_1,
    retrieval_metrics,
)

# ------------------------------------------------------------------ brute-force reference


def brute_force_retrieval(points, labels, ks):
    """Plain-loop leave-one-out retrieval with the pessimistic tie rule.

    ``points`` are integer tuples, so squared distances are exact Python ints and every
    tie is a true tie.
    """
    n = len(labels)
    hits_at = {k: 0 for k in ks}
    p1 = ap_sum = 0.0
    per_class_hits, per_class_total = {}, {}
    queries = 0
    for i in range(n):
        r = sum(1 for j in range(n) if j != i and labels[j] == labels[i])
        if r == 0:
            continue
        queries += 1
        others = [j for j in range(n) if j != i]
        # At equal distance a wrong-label item (False) sorts before a same-label one (True).
        others.sort(
            key=lambda j: (
                sum((a - b) ** 2 for a, b in zip(points[i], points[j])),
                labels[j] == labels[i],
            )
        )
        rel = [labels[j] == labels[i] for j in others]
        p1 += rel[0]
        per_class_hits[labels[i]] = per_class_hits.get(labels[i], 0) + rel[0]
        per_class_total[labels[i]] = per_class_total.get(labels[i], 0) + 1
        for k in ks:
            hits_at[k] += any(rel[:k])
        ap_sum += sum(sum(rel[: m + 1]) / (m + 1) for m in range(r) if rel[m]) / r
    if queries == 0:
        return None, None
    result = {"precision_at_1": p1 / queries}
    result.update({f"recall_at_{k}": hits_at[k] / queries for k in ks})
    result["map_at_r"] = ap_sum / queries
    result["num_queries"] = queries
    per_class = {c: per_class_hits[c] / per_class_total[c] for c in per_class_total}
    return result, per_class


@st.composite
def labelled_points(draw):
    n = draw(st.integers(min_value=1, max_value=24))
    d = draw(st.integers(min_value=1, max_value=3))
    # Few distinct coordinates and labels: many exact distance ties and singleton classes.
    coord = st.integers(min_value=-2, max_value=2)
    points = draw(st.lists(st.tuples(*[coord] * d), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(min_value=0, max_value=5), min_size=n, max_size=n))
    ks = draw(st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=4))
    chunk_size = draw(st.integers(min_value=1, max_value=n + 2))
    threads = draw(st.sampled_from([1, 3]))
    return points, labels, ks, chunk_size, threads


@pytest.mark.parametrize("method", ["numpy", "float32", "flat"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_points())
def test_retrieval_matches_brute_force(method, case):
    # "flat": faiss's float32 search, whose tied and near-tied rankings are checked and
    # redone in float64; here nearly every query has exact ties. "float32": the NumPy
    # search on float32 distances, exact for these small integer coordinates, ties too.
    points, labels, ks, chunk_size, threads = case
    expected, expected_per_class = brute_force_retrieval(points, labels, sorted(set(ks)))
    emb = np.array(points, dtype=np.float32)
    # Forcing several worker threads also exercises the row-block split on tiny chunks.
    with mock.patch.object(retrieval, "_worker_count", lambda rows: threads):
        if expected is None:
            with pytest.raises(ValueError, match="no query has another item with its label"):
                retrieval_metrics(emb, labels, ks=ks, chunk_size=chunk_size)
            return
        got = retrieval_metrics(emb, labels, ks=ks, chunk_size=chunk_size, method=method)
        per_class = per_class_precision_at_1(emb, labels, chunk_size=chunk_size, method=method)
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected, abs=1e-12)
    assert per_class == pytest.approx(expected_per_class, abs=1e-12)


# -------------------------------------------------------------------- hand-computed cases


def test_retrieval_by_hand_on_a_line():
    # 1-D points; squared distance orders like |x - y|. Each query's others, nearest first:
    #   0 a: 1a 3b 4b 10a 11c   R=2  rel 1 0 . .   AP@R = (1/1)/2       = 1/2
    #   1 a: 0a 3b 4b 10a 11c   R=2  rel 1 0 . .   AP@R                 = 1/2
    #   3 b: 4b 1a 0a 10a 11c   R=1  rel 1         AP@R                 = 1
    #   4 b: 3b 1a 0a 10a 11c   R=1  rel 1         AP@R                 = 1
    #  10 a: 11c 4b 3b 1a 0a    R=2  rel 0 0 0 1   AP@R = 0, first hit at rank 4
    #  11 c: singleton class, not a query (but a candidate for the others).
    emb = np.array([[0.0], [1.0], [3.0], [4.0], [10.0], [11.0]])
    labels = ["a", "a", "b", "b", "a", "c"]
    got = retrieval_metrics(emb, labels)
    assert got == pytest.approx(
        {
            "precision_at_1": 4 / 5,
            "recall_at_1": 4 / 5,
            "recall_at_2": 4 / 5,
            "recall_at_4": 1.0,
            "recall_at_8": 1.0,
            "map_at_r": (0.5 + 0.5 + 1 + 1 + 0) / 5,
            "num_queries": 5,
        }
    )
    assert per_class_precision_at_1(emb, labels) == pytest.approx({"a": 2 / 3, "b": 1.0})


def test_retrieval_by_hand_with_ties():
    # Each query's others, nearest first; "=" marks an exact distance tie, which puts the
    # wrong-label item first:
    #   0 A: 1A(1) 2B(4) 3A(9) 4A(16)       R=3  rel 1 0 1   AP@R = (1/1 + 2/3)/3 = 5/9
    #   1 A: 2B(1) = 0A(1) 3A(4) 4A(9)      R=3  rel 0 1 1   AP@R = (1/2 + 2/3)/3 = 7/18
    #   2 B: singleton, not a query
    #   3 A: 2B(1) = 4A(1) 1A(4) 0A(9)      R=3  rel 0 1 1   AP@R = 7/18
    #   4 A: 3A(1) 2B(4) 1A(9) 0A(16)       R=3  rel 1 0 1   AP@R = 5/9
    emb = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    labels = [7, 7, 9, 7, 7]
    got = retrieval_metrics(emb, labels, ks=(1, 2))
    assert got == pytest.approx(
        {
            "precision_at_1": 2 / 4,
            "recall_at_1": 2 / 4,
            "recall_at_2": 1.0,
            "map_at_r": (5 / 9 + 7 / 18 + 7 / 18 + 5 / 9) / 4,
            "num_queries": 4,
        }
    )
    assert per_class_precision_at_1(emb, labels) == {7: 0.5}


def test_ties_are_exact_not_rounded():
    # Query 0: same-label item at squared distance 1, wrong-label one at 1 + 2e-13. A tie
    # rule that rounded distances (e.g. to float32) would merge them and miss.
    emb = np.array([[0.0], [1.0], [-(1.0 + 1e-13)]])
    got = retrieval_metrics(emb, ["a", "a", "b"], ks=(1,))
    assert got["precision_at_1"] == 1.0
    # An exact tie, by contrast, is a miss.
    got = retrieval_metrics(np.array([[0.0], [1.0], [-1.0]]), ["a", "a", "b"], ks=(1,))
    assert got["precision_at_1"] == 0.5


def test_k_beyond_the_other_rows_behaves_as_all_of_them():
    emb = np.array([[0.0], [5.0], [1.0]])
    got = retrieval_metrics(emb, [0, 1, 0], ks=(1, 100))
    assert got["recall_at_1"] == 1.0 and got["recall_at_100"] == 1.0
    got = retrieval_metrics(emb, [0, 0, 1], ks=(1, 100))
    assert got["recall_at_1"] == 0.0 and got["recall_at_100"] == 1.0


def test_precision_at_1_reported_without_k_1():
    emb = np.array([[0.0], [1.0], [3.0], [4.0], [10.0], [11.0]])
    got = retrieval_metrics(emb, ["a", "a", "b", "b", "a", "c"], ks=(4,))
    assert set(got) == {"precision_at_1", "recall_at_4", "map_at_r", "num_queries"}
    assert got["precision_at_1"] == pytest.approx(4 / 5)


# ---------------------------------------------------------------- degenerate and ideal


def test_collapsed_embedding_scores_zero():
    row = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    emb = np.tile(row, (30, 1))
    labels = np.repeat([0, 1, 2], 10)
    anchors = np.arange(0, 30, 10)
    triplets = (anchors, anchors + 1, (anchors + 10) % 30)
    got = evaluate_embeddings(emb, labels, triplets=triplets, margin=0.5)
    assert got["precision_at_1"] == 0.0
    assert got["map_at_r"] == 0.0
    # 20 wrong-label rows tie with the 9 right ones and all rank first.
    assert all(got[f"recall_at_{k}"] == 0.0 for k in (1, 2, 4, 8))
    assert got["triplet_accuracy"] == 0.0
    assert got["active_fraction"] == 1.0
    assert got["mean_ap_dist"] == 0.0 and got["mean_an_dist"] == 0.0
    assert per_class_precision_at_1(emb, labels) == {0: 0.0, 1: 0.0, 2: 0.0}


def test_separated_clusters_score_one():
    rng = np.random.default_rng(1)
    centres = 100.0 * np.eye(4, 8)
    labels = rng.permutation(np.repeat(np.arange(4), 12))
    emb = (centres[labels] + rng.uniform(-1, 1, size=(48, 8))).astype(np.float32)
    anchors = np.flatnonzero(labels == 0)[:5]
    positives = np.flatnonzero(labels == 0)[5:10]
    negatives = np.flatnonzero(labels != 0)[:5]
    got = evaluate_embeddings(emb, labels, triplets=(anchors, positives, negatives), ks=(1, 8))
    for key in ("precision_at_1", "recall_at_1", "recall_at_8", "map_at_r", "triplet_accuracy"):
        assert got[key] == 1.0, key
    assert got["active_fraction"] == 0.0
    assert got["num_queries"] == 48
    assert per_class_precision_at_1(emb, labels, chunk_size=7) == {c: 1.0 for c in range(4)}


def test_evaluate_embeddings_is_json_ready():
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((40, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 40)
    triplets = (np.array([0, 1]), np.array([2, 3]), np.array([4, 5]))
    got = evaluate_embeddings(emb, labels, triplets=triplets, margin=0.3)
    assert set(got) == {
        "precision_at_1",
        "recall_at_1",
        "recall_at_2",
        "recall_at_4",
        "recall_at_8",
        "map_at_r",
        "num_queries",
        "embedding_norm",
        "triplet_accuracy",
        "active_fraction",
        "mean_ap_dist",
        "mean_an_dist",
        "easy_fraction",
        "semi_hard_fraction",
        "hard_fraction",
    }
    assert type(got["num_queries"]) is int
    assert all(type(v) is float for k, v in got.items() if k != "num_queries")
    json.dumps(got)
    assert got["embedding_norm"] == pytest.approx(np.linalg.norm(emb, axis=1).mean(), rel=1e-6)
    ap, an = triplet_distances(emb, *triplets)
    assert got["mean_ap_dist"] == pytest.approx(ap.mean())
    assert got["active_fraction"] == active_triplet_fraction(ap, an, 0.3)
    assert "triplet_accuracy" not in evaluate_embeddings(emb, labels)


def test_label_types_and_dtypes_do_not_change_results():
    rng = np.random.default_rng(3)
    emb = rng.integers(-3, 4, size=(50, 3)).astype(np.float64)
    codes = rng.integers(0, 6, 50)
    base = retrieval_metrics(emb, codes, chunk_size=16)
    names = np.array([f"class-{c}" for c in codes])
    assert retrieval_metrics(emb, names) == base
    assert retrieval_metrics(emb.astype(np.float32), codes * 1000 - 7) == base
    assert retrieval_metrics(emb.astype(np.int64), codes[:, None]) == base
    per_class = per_class_precision_at_1(emb, names)
    assert all(type(k) is str for k in per_class)
    json.dumps(per_class_precision_at_1(emb, codes))
    # Integer labels with class names: keyed by the names, same values.
    by_code = per_class_precision_at_1(emb, codes)
    named = per_class_precision_at_1(emb, codes, class_names=[f"c{i}" for i in range(99)])
    assert named == {f"c{k}": v for k, v in by_code.items()}


# ---------------------------------------------------------------------- distance helpers


def test_triplet_distances_match_a_loop():
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((12, 4)).astype(np.float32)
    emb[11] = emb[0]
    a, p, n = (rng.integers(0, 12, 20) for _ in range(3))
    a[0], p[0] = 0, 11
    ap, an = triplet_distances(emb, a, p, n)
    for t in range(20):
        e = emb.astype(np.float64)
        assert ap[t] == pytest.approx(((e[a[t]] - e[p[t]]) ** 2).sum(), rel=1e-12)
        assert an[t] == pytest.approx(((e[a[t]] - e[n[t]]) ** 2).sum(), rel=1e-12)
    assert ap[0] == 0.0  # equal rows: exactly zero, no GEMM cancellation noise
    assert ap.dtype == an.dtype == np.float64 and ap.shape == an.shape == (20,)
    empty = np.array([], dtype=np.int64)
    assert triplet_distances(emb, empty, empty, empty)[0].shape == (0,)


def test_strict_accuracy_counts_ties_as_wrong():
    assert strict_triplet_accuracy([1.0, 2.0, 3.0, 0.0], [2.0, 2.0, 1.0, 0.0]) == 0.25
    assert strict_triplet_accuracy(np.zeros(5), np.zeros(5)) == 0.0
    assert strict_triplet_accuracy([0.0], [1e-300]) == 1.0


def test_active_fraction_uses_the_margin():
    ap = np.array([0.0, 1.0, 2.0, 3.0])
    an = np.array([1.0, 1.0, 1.0, 5.0])
    # ap - an = -1, 0, 1, -2
    assert active_triplet_fraction(ap, an, margin=0.0) == 0.25
    assert active_triplet_fraction(ap, an, margin=1.0) == 0.5  # -1 + 1 = 0 is not active
    assert active_triplet_fraction(ap, an, margin=1.5) == 0.75
    assert active_triplet_fraction(ap, an, margin=2.5) == 1.0
    assert active_triplet_fraction(ap, an) == 0.5


# ---------------------------------------------------------------------------- validation

EMB = np.zeros((10, 3), dtype=np.float32)
LABELS = np.arange(10) % 2
IDX = np.array([0, 1, 2])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: retrieval_metrics(np.zeros(10), LABELS), r"emb must be 2-D \(N, D\), got shape"),
        (lambda: retrieval_metrics(np.zeros((0, 3)), []), r"emb must be non-empty, got shape"),
        (lambda: retrieval_metrics(np.full((2, 2), "x"), [0, 0]), "real numeric array"),
        (
            lambda: retrieval_metrics(np.array([[0.0], [np.nan]]), [0, 0]),
            r"emb must be finite \(no NaN or inf\)",
        ),
        (lambda: retrieval_metrics(np.array([[1e200], [0.0]]), [0, 0]), "overflow"),
        (
            lambda: retrieval_metrics(EMB, np.zeros((10, 2))),
            r"^labels must have shape \(N,\) = \(10,\), got \(10, 2\)$",
        ),
        (
            lambda: retrieval_metrics(EMB, LABELS[:9]),
            r"^labels must have shape \(N,\) = \(10,\), got \(9,\)$",
        ),
        (lambda: retrieval_metrics(EMB, np.arange(10)), "no query has another item"),
        (lambda: retrieval_metrics(EMB, LABELS, ks=()), "ks must be"),
        (lambda: retrieval_metrics(EMB, LABELS, ks=(0, 1)), "ks must be"),
        (lambda: retrieval_metrics(EMB, LABELS, ks=(1.5,)), "ks must be"),
        (lambda: retrieval_metrics(EMB, LABELS, ks=5), "ks must be"),
        (lambda: retrieval_metrics(EMB, LABELS, chunk_size=0), "chunk_size must be"),
        (lambda: retrieval_metrics(EMB, LABELS, chunk_size=None), "chunk_size must be"),
        (lambda: retrieval_metrics(EMB, LABELS, chunk_size=2.5), "chunk_size must be"),
        (lambda: per_class_precision_at_1(EMB, LABELS[:3]), r"labels must have shape"),
        (
            lambda: triplet_distances(EMB, IDX, IDX, np.array([0, 1, 10])),
            r"^negative_idx out of range \[0, 10\): min 0, max 10$",
        ),
        (
            lambda: triplet_distances(EMB, np.array([-1, 0, 1]), IDX, IDX),
            r"^anchor_idx out of range \[0, 10\): min -1, max 1$",
        ),
        (
            lambda: triplet_distances(EMB, IDX, IDX.astype(float), IDX),
            r"^positive_idx must be an integer array, got dtype float64$",
        ),
        (
            lambda: triplet_distances(EMB, IDX.reshape(3, 1), IDX, IDX),
            r"^anchor_idx must be 1-D \(T,\), got shape \(3, 1\)$",
        ),
        (
            lambda: triplet_distances(EMB, IDX, IDX, IDX[:2]),
            r"must have equal lengths, got 3, 3, 2$",
        ),
        (lambda: strict_triplet_accuracy([], []), r"^ap_dist and an_dist must be non-empty$"),
        (
            lambda: strict_triplet_accuracy([1.0, 2.0, 3.0], [1.0, 2.0]),
            r"^an_dist must have shape \(T,\) = \(3,\), got \(2,\)$",
        ),
        (lambda: active_triplet_fraction([[1.0]], [[1.0]]), r"ap_dist must be 1-D"),
        (lambda: active_triplet_fraction([], []), "must be non-empty"),
        (lambda: active_triplet_fraction([1.0], [1.0], margin=np.nan), "margin must be finite"),
        (
            lambda: evaluate_embeddings(EMB, LABELS, triplets=(IDX, IDX)),
            r"triplets must be \(anchor_idx, positive_idx, negative_idx\), got 2 arrays",
        ),
        (
            lambda: evaluate_embeddings(EMB, LABELS, triplets=(IDX, IDX, IDX + 8)),
            r"negative_idx out of range \[0, 10\)",
        ),
    ],
)
def test_bad_input_raises_a_specific_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_triplet_difficulty_by_hand():
    from gluon_triplet.evaluation.metrics import triplet_difficulty

    ap = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    an = np.array([0.5, 1.0, 1.5, 2.0, 4.0])  # hard, hard (tie), semi-hard, easy (= ap + m), easy
    got = triplet_difficulty(ap, an, margin=1.0)
    assert got == {"easy_fraction": 0.4, "semi_hard_fraction": 0.2, "hard_fraction": 0.4}


# ------------------------------------------------------------------- query vs gallery


def brute_force_gallery(q_points, q_labels, g_points, g_labels, ks):
    """Plain-loop query-vs-gallery retrieval, pessimistic ties, nothing excluded."""
    hits_at = {k: 0 for k in ks}
    p1 = ap_sum = 0.0
    queries = 0
    for qp, ql in zip(q_points, q_labels):
        r = sum(1 for gl in g_labels if gl == ql)
        if r == 0:
            continue
        queries += 1
        order = sorted(
            range(len(g_labels)),
            key=lambda j: (sum((a - b) ** 2 for a, b in zip(qp, g_points[j])), g_labels[j] == ql),
        )
        rel = [g_labels[j] == ql for j in order]
        p1 += rel[0]
        for k in ks:
            hits_at[k] += any(rel[:k])
        ap_sum += sum(sum(rel[: m + 1]) / (m + 1) for m in range(r) if rel[m]) / r
    result = {"precision_at_1": p1 / queries}
    result.update({f"recall_at_{k}": hits_at[k] / queries for k in ks})
    result["map_at_r"] = ap_sum / queries
    result["num_queries"] = queries
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 12).flatmap(
        lambda q: st.integers(1, 15).flatmap(
            lambda m: st.tuples(
                st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=q, max_size=q),
                st.lists(st.integers(0, 3), min_size=q, max_size=q),
                st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=m, max_size=m),
                st.lists(st.integers(0, 3), min_size=m, max_size=m),
                st.integers(1, 4),
            )
        )
    )
)
@pytest.mark.parametrize("method", ["numpy", "float32", "flat"])
def test_gallery_retrieval_matches_brute_force(method, case):
    qp, ql, gp, gl, chunk = case
    ks = (1, 2, 4, 20)
    if not set(ql) & set(gl):
        with pytest.raises(ValueError, match="no query's label occurs in the gallery"):
            gallery_retrieval_metrics(np.array(qp), ql, np.array(gp), gl, ks=ks)
        return
    expected = brute_force_gallery(qp, ql, gp, gl, ks)
    got = gallery_retrieval_metrics(
        np.array(qp), ql, np.array(gp), gl, ks=ks, chunk_size=chunk, method=method
    )
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_gallery_retrieval_by_hand_without_self_exclusion():
    # Gallery on a line: 0(a) 1(b) 3(a) 10(b). Query 0 (a) finds itself first (distance 0,
    # nothing excluded), then 1(b) at 1, then 3(a) at 9: ranks a b a b, R = 2, and AP@R
    # only looks at ranks <= R: (1/1) / 2. Query 10 (b): 10(b), 3(a), 1(b): also (1/1) / 2.
    # Query 5 (c) has no relevant item: excluded. R@2 = 1 for both.
    gallery = np.array([[0.0], [1.0], [3.0], [10.0]])
    got = gallery_retrieval_metrics(
        np.array([[0.0], [10.0], [5.0]]), ["a", "b", "c"], gallery, ["a", "b", "a", "b"], ks=(1, 2)
    )
    assert got["num_queries"] == 2
    assert got["precision_at_1"] == got["recall_at_2"] == 1.0
    assert got["map_at_r"] == pytest.approx(0.5)
    # Query 2 (a): 1(b) and 3(a) both at distance 1 -> the tie puts b first.
    tie = gallery_retrieval_metrics(np.array([[2.0]]), ["a"], gallery, ["a", "b", "a", "b"])
    assert tie["precision_at_1"] == 0.0 and tie["recall_at_2"] == 1.0


def test_gallery_equal_to_queries_differs_from_leave_one_out():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 4, 40)
    # Against itself as gallery every query finds itself: P@1 is 1, unlike leave-one-out.
    assert gallery_retrieval_metrics(x, y, x, y)["precision_at_1"] == 1.0
    assert retrieval_metrics(x, y)["precision_at_1"] < 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((2, 3)), [0, 1], np.zeros((2, 4)), [0, 1]), r"gallery_emb must have shape"),
        ((np.zeros((2, 3)), [0], np.zeros((2, 3)), [0, 1]), r"query_labels must have shape"),
        ((np.zeros((2, 3)), [0, 1], np.zeros((2, 3)), [0]), r"gallery_labels must have shape"),
        ((np.zeros(3), [0], np.zeros((2, 3)), [0, 1]), r"query_emb must be 2-D"),
    ],
)
def test_gallery_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        gallery_retrieval_metrics(*args)


# ---------------------------------------------------------------------------- clustering


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 4), min_size=n, max_size=n),
            st.lists(st.integers(0, 5), min_size=n, max_size=n),
        )
    )
)
def test_nmi_and_ami_match_scikit_learn(case):
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    a, b = case
    assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-10)
    assert ami(a, b) == pytest.approx(adjusted_mutual_info_score(a, b), abs=1e-9)


def test_nmi_by_hand():
    # Two classes of 2 split perfectly -> 1; a clustering that ignores the classes
    # (one cluster per class member pair, crossed) -> MI 0 -> 0.
    assert nmi([0, 0, 1, 1], ["x", "x", "y", "y"]) == pytest.approx(1.0)
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0
    # Classes {0,0,1,1}, clusters {0,0,0,1}: H(U) = ln 2, H(V) = -(3/4 ln 3/4 + 1/4 ln 1/4),
    # MI = H(U) - H(U|V) with H(U|V) = 3/4 * H(2/3, 1/3).
    hu = np.log(2)
    hv = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    mi = hu - 0.75 * -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(mi / ((hu + hv) / 2))


def test_clustering_metrics_on_separated_and_collapsed_embeddings():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    centres = rng.normal(size=(4, 8)) * 20
    separated = centres[y] + rng.normal(size=(100, 8)) * 0.1
    got = clustering_metrics(separated, y, seed=0)
    assert got == {"nmi": pytest.approx(1.0), "ami": pytest.approx(1.0)}
    noise = clustering_metrics(rng.normal(size=(100, 8)), y, seed=0)
    assert noise["ami"] < 0.2 and noise["nmi"] < 0.3
    # Deterministic under a fixed seed.
    assert clustering_metrics(separated[::-1], y[::-1], seed=1) == clustering_metrics(
        separated[::-1], y[::-1], seed=1
    )


def test_kmeans_clusters_bad_k():
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, N=3\]"):
        kmeans_clusters(np.zeros((3, 2)), 4)


def test_ami_memory_does_not_grow_with_classes_squared(tmp_path):
    """20,000 labels in 5,000 classes under a 1.5 GiB address-space limit: the pairwise
    expected-MI table of classes x clusters needed about 5 GiB; scikit-learn's sparse
    one fits. Checked against a brute-force MI on a small case below."""
    code = (
        "import resource, numpy as np\n"
        "from gluon_triplet.evaluation.clustering import ami, nmi\n"
        "rng = np.random.default_rng(0)\n"
        "y = np.arange(20000) % 5000\n"
        "rng.shuffle(y)\n"
        "p = rng.permutation(y)\n"
        "limit = 1536 << 20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "a, n = ami(y, p), nmi(y, p)\n"
        "assert abs(a) < 0.01 and 0 < n < 1, (a, n)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), min_size=1, max_size=40),
)
def test_nmi_matches_brute_force_mutual_information(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    n = len(a)

    def entropy(x):
        _, counts = np.unique(x, return_counts=True)
        p = counts / n
        return float(-(p * np.log(p)).sum())

    mi = 0.0
    for u in np.unique(a):
        for v in np.unique(b):
            nuv = np.sum((a == u) & (b == v))
            if nuv:
                mi += nuv / n * np.log(n * nuv / (np.sum(a == u) * np.sum(b == v)))
    h = (entropy(a) + entropy(b)) / 2
    want = 1.0 if h == 0 else max(0.0, min(1.0, mi / h))
    assert nmi(a, b) == pytest.approx(want, abs=1e-9)
    assert -1.0 <= ami(a, b) <= 1.0 + 1e-12


def test_clustering_metrics_samples_above_max_points_and_says_so():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    separated = rng.normal(size=(4, 8))[y] * 20 + rng.normal(size=(120, 8)) * 0.1
    full = clustering_metrics(separated, y, seed=0)
    assert "clustering_points" not in full
    sampled = clustering_metrics(separated, y, seed=0, max_points=50)
    assert sampled["clustering_points"] == 50
    assert sampled["nmi"] == pytest.approx(1.0) and sampled["ami"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_points"):
        clustering_metrics(separated, y, max_points=1)


def test_clustering_metrics_skips_kmeans_above_the_work_limit(caplog):
    y = np.repeat(np.arange(10), 2)  # 20 points, 10 classes, 3 dims: 600 a pass
    emb = np.random.default_rng(0).normal(size=(20, 3))
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        got = clustering_metrics(emb, y, max_work=599)
    assert set(got) == {"clustering_skipped"}
    assert "k=10 classes on 20 points of 3 dimensions" in got["clustering_skipped"]
    assert [r.getMessage() for r in caplog.records] == [
        "NMI/AMI skipped: " + got["clustering_skipped"]
    ]
    assert set(clustering_metrics(emb, y, max_work=600)) == {"nmi", "ami"}


@pytest.mark.parametrize("seed", range(6))
def test_faiss_search_equals_numpy_beyond_its_first_neighbours(seed):
    # Enough rows that faiss returns only a part of them (depth + a few): clusters of
    # integer points with many exact ties, and near ties after a tiny shift of some rows,
    # so the float64 check must catch the rankings float32 cannot tell.
    rng = np.random.default_rng(seed)
    n = 600
    emb = rng.integers(-3, 4, size=(n, 4)).astype(np.float64)
    emb[::7] += 1e-9
    labels = rng.integers(0, 40, n)
    exact = retrieval_metrics(emb, labels, ks=(1, 2, 4, 8), method="numpy")
    got = retrieval_metrics(emb, labels, ks=(1, 2, 4, 8), method="flat")
    assert "neighbours" not in got and "neighbours" not in exact
    assert got == exact
    assert per_class_precision_at_1(emb, labels, method="flat") == per_class_precision_at_1(
        emb, labels, method="numpy"
    )
    both = evaluate_embeddings(emb, labels, per_class=True, method="flat")
    assert both["per_class_precision_at_1"] == per_class_precision_at_1(emb, labels)


def test_ivf_search_says_it_is_approximate_and_caps_r(monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)) * 10
    labels = np.repeat(np.arange(3), 400)
    emb = (centres[labels] + rng.standard_normal((1200, 8))).astype(np.float32)
    monkeypatch.setattr(retrieval, "APPROXIMATE_MAX_R", 50)
    got = retrieval_metrics(emb, labels, method="ivf")
    assert got["neighbours"].startswith("approximate (IVF, nlist=")
    assert got["map_at_r_max_r"] == 50
    assert got["precision_at_1"] == pytest.approx(1.0)
    assert got["map_at_r"] > 0.99
    monkeypatch.setattr(neighbours, "APPROXIMATE_ABOVE", 1000)
    assert retrieval_metrics(emb, labels)["neighbours"].startswith("approximate")
