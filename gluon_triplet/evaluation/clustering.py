"""Clustering scores of an embedding: k-means clusters compared with the labels (NMI, AMI)."""

from __future__ import annotations

import logging
from typing import Dict, Tuple

import numpy as np

from .arrays import _as_embedding, _encode_labels, _to_numpy

__all__ = [
    "CLUSTERING_MAX_POINTS",
    "CLUSTERING_MAX_WORK",
    "ami",
    "clustering_metrics",
    "kmeans_clusters",
    "nmi",
]


#: Above this many points, k-means clusters a seeded random sample of this many.
CLUSTERING_MAX_POINTS = 20_000

#: k-means is skipped when points x clusters x dimensions (the multiply-adds of one Lloyd
#: pass) exceeds this.
CLUSTERING_MAX_WORK = 2_000_000_000

logger = logging.getLogger("gluon_triplet")


def _as_labelling(labels_true, labels_pred) -> Tuple[np.ndarray, np.ndarray]:
    a = _to_numpy(labels_true)
    b = _to_numpy(labels_pred)
    if a.ndim != 1 or b.shape != a.shape:
        raise ValueError(
            f"labels_true and labels_pred must be 1-D of equal length, got {a.shape}, {b.shape}"
        )
    if a.size == 0:
        raise ValueError("labels_true and labels_pred must be non-empty")
    return a, b


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information of two labellings (arithmetic-mean normalisation).

    scikit-learn's ``normalized_mutual_info_score``: ``MI(U, V) / ((H(U) + H(V)) / 2)``,
    natural logs. Two labellings that each put everything in one group score 1.0.

    Parameters
    ----------
    labels_true, labels_pred : (N,) int or str

    Returns
    -------
    float in [0, 1]
    """
    from sklearn.metrics import normalized_mutual_info_score

    a, b = _as_labelling(labels_true, labels_pred)
    return float(min(1.0, max(0.0, normalized_mutual_info_score(a, b))))


def ami(labels_true, labels_pred) -> float:
    """Adjusted mutual information (arithmetic-mean normalisation): scikit-learn's
    ``adjusted_mutual_info_score``, ``(MI - E[MI]) / (mean(H(U), H(V)) - E[MI])``.

    0 for a labelling no better than chance, 1 for identical partitions; can be negative.

    Parameters
    ----------
    labels_true, labels_pred : (N,) int or str

    Returns
    -------
    float
    """
    from sklearn.metrics import adjusted_mutual_info_score

    a, b = _as_labelling(labels_true, labels_pred)
    return float(adjusted_mutual_info_score(a, b))


def kmeans_clusters(emb, k: int, seed: int = 0) -> np.ndarray:
    """k-means cluster of each row (scikit-learn's ``KMeans``, k-means++ init, fixed seed).

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    k : int, 1 <= k <= N
    seed : int

    Returns
    -------
    (N,) int64 cluster ids in ``[0, k)``
    """
    from sklearn.cluster import KMeans

    x = _as_embedding(emb)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(x):
        raise ValueError(f"k must be an integer in [1, N={len(x)}], got {k!r}")
    model = KMeans(n_clusters=int(k), n_init=1, random_state=int(seed))
    return model.fit_predict(x).astype(np.int64)


def clustering_metrics(
    emb,
    labels,
    seed: int = 0,
    max_points: int = CLUSTERING_MAX_POINTS,
    max_work: float = CLUSTERING_MAX_WORK,
) -> Dict[str, object]:
    """NMI and AMI of k-means clusters against the labels, k = number of classes.

    Above ``max_points`` points a seeded random sample of that many is clustered; k-means
    is skipped, with an INFO line, when points x classes x dimensions exceeds ``max_work``.

    Parameters
    ----------
    emb : (N, D) array-like, real, finite
    labels : (N,) int or str
    seed : int
        Seed of the k-means initialisation (and of the sample).
    max_points : int
    max_work : float

    Returns
    -------
    dict
        ``nmi`` and ``ami``; with ``clustering_points`` (the sample's size) when a
        sample was clustered; only ``clustering_skipped`` (the reason) when skipped.
    """
    x = _as_embedding(emb)
    codes, _ = _encode_labels(labels, x.shape[0])
    if not isinstance(max_points, (int, np.integer)) or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    out: Dict[str, object] = {}
    if len(x) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), int(max_points), replace=False))
        x, codes = x[pick], codes[pick]
        out["clustering_points"] = int(max_points)
    k = len(np.unique(codes))
    work = float(len(x)) * k * x.shape[1]
    if work > max_work:
        reason = (
            f"k-means with k={k} classes on {len(x)} points of {x.shape[1]} dimensions "
            f"({work:.3g} multiply-adds a pass) is above the limit of {max_work:.3g}"
        )
        logger.info("NMI/AMI skipped: %s", reason)
        return {"clustering_skipped": reason}
    clusters = kmeans_clusters(x, k, seed=seed)
    out.update(nmi=nmi(codes, clusters), ami=ami(codes, clusters))
    return out
