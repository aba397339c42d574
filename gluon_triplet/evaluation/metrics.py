"""Embedding-quality metrics as pure NumPy functions (no MXNet): ``(N, D)`` embeddings,
``(N,)`` labels and ``(T,)`` triplet indices in, floats out. Distances are squared L2.
Ranking metrics break distance ties pessimistically (a wrong-label item first), so a
collapsed embedding scores 0."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from .arrays import _as_distance_pair, _as_embedding, _as_index, _as_ks, _row_sq_norms
from .clustering import clustering_metrics
from .retrieval import _per_class, _retrieval, _retrieval_setup, per_class_precision_at_1

__all__ = [
    "active_triplet_fraction",
    # Also here, beside evaluate_embeddings: the trainer imports them from this module.
    "clustering_metrics",
    "per_class_precision_at_1",
    "evaluate_embeddings",
    "strict_triplet_accuracy",
    "triplet_difficulty",
    "triplet_distances",
]


def triplet_distances(emb, anchor_idx, positive_idx, negative_idx):
    """Squared L2 anchor-positive and anchor-negative distances of index triplets, from
    row differences (equal rows give exactly 0).

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    anchor_idx, positive_idx, negative_idx : (T,) int
        Row indices into ``emb``, each in ``[0, N)``.

    Returns
    -------
    ap_dist, an_dist : (T,) float64
    """
    emb = _as_embedding(emb, convert=False)
    n = emb.shape[0]
    a = _as_index(anchor_idx, "anchor_idx", n)
    p = _as_index(positive_idx, "positive_idx", n)
    g = _as_index(negative_idx, "negative_idx", n)
    if not len(a) == len(p) == len(g):
        raise ValueError(
            "anchor_idx, positive_idx, negative_idx must have equal lengths, "
            f"got {len(a)}, {len(p)}, {len(g)}"
        )
    ap = np.empty(len(a))
    an = np.empty(len(a))
    step = max(1, 2**21 // emb.shape[1])  # rows gathered at once, in float64
    for s in range(0, len(a), step):
        anchors = emb[a[s : s + step]].astype(np.float64)
        diff = anchors - emb[p[s : s + step]]
        ap[s : s + step] = np.einsum("ij,ij->i", diff, diff)
        np.subtract(anchors, emb[g[s : s + step]], out=diff)
        an[s : s + step] = np.einsum("ij,ij->i", diff, diff)
    return ap, an


def strict_triplet_accuracy(ap_dist, an_dist) -> float:
    """Fraction of triplets whose positive is strictly closer than the negative (ties and
    NaN count as failures).

    Parameters
    ----------
    ap_dist, an_dist : (T,) float, T >= 1

    Returns
    -------
    float
    """
    ap, an = _as_distance_pair(ap_dist, an_dist)
    return float(np.count_nonzero(ap < an) / ap.size)


def active_triplet_fraction(ap_dist, an_dist, margin: float = 1.0) -> float:
    """Fraction of triplets with a non-zero hinge loss: ``ap_dist - an_dist + margin > 0``.

    Parameters
    ----------
    ap_dist, an_dist : (T,) float, T >= 1
    margin : float

    Returns
    -------
    float
    """
    ap, an = _as_distance_pair(ap_dist, an_dist)
    margin = float(margin)
    if not np.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin}")
    return float(np.count_nonzero(ap - an + margin > 0) / ap.size)


def triplet_difficulty(ap_dist, an_dist, margin: float = 1.0) -> Dict[str, float]:
    """Split triplets into easy, semi-hard and hard, as FaceNet does.

    ``hard``: ``an_dist <= ap_dist`` (wrong or tied); ``semi_hard``:
    ``ap_dist < an_dist < ap_dist + margin`` (right, but still inside the margin);
    ``easy``: ``an_dist >= ap_dist + margin`` (no loss). The three fractions sum to 1.

    Parameters
    ----------
    ap_dist, an_dist : (T,) float, T >= 1
    margin : float

    Returns
    -------
    dict with ``easy_fraction``, ``semi_hard_fraction``, ``hard_fraction``
    """
    ap, an = _as_distance_pair(ap_dist, an_dist)
    hard = np.count_nonzero(~(ap < an))  # NaN counts as hard, like a tie
    easy = np.count_nonzero(an >= ap + float(margin))
    return {
        "easy_fraction": easy / ap.size,
        "semi_hard_fraction": (ap.size - hard - easy) / ap.size,
        "hard_fraction": hard / ap.size,
    }


def evaluate_embeddings(
    emb,
    labels,
    triplets: Optional[Tuple[Iterable[int], Iterable[int], Iterable[int]]] = None,
    margin: float = 1.0,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = 1024,
    method: str = "auto",
    per_class: bool = False,
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """All per-epoch metrics of an embedding in one JSON-serialisable dict.

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    labels : (N,) array-like of int or str
    triplets : (anchor_idx, positive_idx, negative_idx), each (T,) int, optional
        Fixed evaluation triplets, e.g. from ``triplets.create_pairs``.
    margin : float
        The ``TripletLoss`` margin, for ``active_fraction``.
    ks : iterable of positive int
        Passed to :func:`retrieval_metrics`.
    chunk_size, method : int, str
        Passed to :func:`retrieval_metrics`.
    per_class : bool
        Also ``per_class_precision_at_1`` (see :func:`per_class_precision_at_1`), from the
        same search.
    class_names : sequence of str, optional
        Its keys, as in :func:`per_class_precision_at_1`.

    Returns
    -------
    dict of str -> float (``num_queries`` is int)
        Everything from :func:`retrieval_metrics`, plus ``embedding_norm`` (mean L2 norm of
        the rows) and, when ``triplets`` is given, ``triplet_accuracy`` (strict, see
        :func:`strict_triplet_accuracy`), ``active_fraction`` (see
        :func:`active_triplet_fraction`), ``mean_ap_dist``, ``mean_an_dist`` and the
        fractions of :func:`triplet_difficulty`.
    """
    ks = _as_ks(ks)
    x, codes, classes, num_relevant, queries, chunk_size = _retrieval_setup(emb, labels, chunk_size)
    result, hits = _retrieval(x, codes, classes, num_relevant, queries, chunk_size, ks, method)
    if per_class:
        result["per_class_precision_at_1"] = _per_class(hits, codes, classes, queries, class_names)
    norms = np.concatenate(
        [
            np.sqrt(_row_sq_norms(x[s : s + 65536].astype(np.float64)))
            for s in range(0, len(x), 65536)
        ]
    )
    result["embedding_norm"] = float(norms.mean())
    if triplets is not None:
        if len(triplets) != 3:
            raise ValueError(
                "triplets must be (anchor_idx, positive_idx, negative_idx), "
                f"got {len(triplets)} arrays"
            )
        ap, an = triplet_distances(x, *triplets)
        result["triplet_accuracy"] = strict_triplet_accuracy(ap, an)
        result["active_fraction"] = active_triplet_fraction(ap, an, margin)
        result["mean_ap_dist"] = float(ap.mean())
        result["mean_an_dist"] = float(an.mean())
        result.update(triplet_difficulty(ap, an, margin))
    return result
