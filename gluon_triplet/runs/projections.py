"""Embeddings in two dimensions for the run's pictures: PCA, and t-SNE (scikit-learn,
imported when called)."""

from __future__ import annotations

import inspect

import numpy as np

__all__ = ["pca_2d", "tsne_2d"]


def _as_points(emb, name="emb"):
    x = np.asarray(emb.asnumpy() if hasattr(emb, "asnumpy") else emb, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be (N, D) with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def pca_2d(emb):
    """First two principal components.

    Parameters
    ----------
    emb : (N, D) array, N >= 2

    Returns
    -------
    (N, 2) float64
        Zero-filled columns when the data has fewer than two dimensions.
    """
    from sklearn.decomposition import PCA

    x = _as_points(emb)
    pcs = PCA(n_components=min(2, x.shape[0], x.shape[1])).fit_transform(x)
    return np.pad(pcs, ((0, 0), (0, 2 - pcs.shape[1])))


def tsne_2d(emb, seed=0, perplexity=30.0, max_iter=500):
    """2-D t-SNE (scikit-learn, Barnes-Hut) after PCA to at most 50 dimensions.

    Parameters
    ----------
    emb : (N, D) array, N >= 4
    seed : int
    perplexity : float
        Capped at ``(N - 1) / 3`` so that small samples work.
    max_iter : int
        Optimisation steps; scikit-learn's minimum is 250.

    Returns
    -------
    (N, 2) float64
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = _as_points(emb)
    n, d = x.shape
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    if d > 50:
        x = PCA(n_components=min(50, n), random_state=seed).fit_transform(x)
    perplexity = float(min(perplexity, (n - 1) / 3))
    # scikit-learn renamed n_iter to max_iter in 1.5; Python 3.8 stops at 1.3.
    steps = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed, **{steps: max_iter}
    )
    # One OpenMP thread: spinning threads stall t-SNE on a busy machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x)
