"""Distances: paired and pairwise agree with brute force, for every metric."""

import numpy as np
import pytest
from mxnet import autograd, nd

from gluon_triplet.training.distances import METRICS, Distance, get_distance, pairwise_distances


def brute(a, b, metric):
    a, b = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = (a * b).sum(1) / np.maximum(na * nb, 1e-300)
        return np.clip(1 - np.where((na > 0) & (nb > 0), cos, 0.0), 0, 2)
    sq = ((a - b) ** 2).sum(1)
    return sq if metric == "squared" else np.sqrt(sq)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_matches_brute_force_and_pairwise(metric):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 7, 5)).astype(np.float32)
    b[0] = a[0]  # zero distance
    a[1] = 0  # a zero row
    d = get_distance(metric)
    got = d.paired(nd, nd.array(a), nd.array(b)).asnumpy()
    np.testing.assert_allclose(got, brute(a, b, metric), rtol=1e-5, atol=1e-5)
    full = pairwise_distances(nd.array(np.concatenate([a, b])), metric).asnumpy()
    np.testing.assert_allclose(got, full[np.arange(7), 7 + np.arange(7)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_gradient_is_finite_at_zero_distance(metric):
    a = nd.array(np.ones((2, 3), np.float32))
    b = a.copy()
    a.attach_grad()
    with autograd.record():
        d = get_distance(metric).paired(nd, a, b)
    d.backward()
    assert np.isfinite(a.grad.asnumpy()).all()


def test_registry_and_errors():
    assert get_distance("cosine") is get_distance(get_distance("cosine"))
    assert Distance("euclidean") == get_distance("euclidean")
    with pytest.raises(ValueError, match="unknown metric 'l1'; choose one of: squared, euclidean"):
        get_distance("l1")
