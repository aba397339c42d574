"""Distances between embeddings, one object shared by the miner (:meth:`Distance.pairwise`)
and the loss (:meth:`Distance.paired`).

``squared`` is the squared Euclidean distance of ``gluon.loss.TripletLoss``;
``euclidean`` its square root; ``cosine`` is ``1 - cos(angle)``, an all-zero row counting
as orthogonal to everything (distance 1).
"""

from __future__ import annotations

from typing import Any, Dict, Union

from mxnet import nd

__all__ = ["DISTANCES", "METRICS", "Distance", "get_distance", "pairwise_distances"]

METRICS = ("squared", "euclidean", "cosine")

# Below this squared norm a row counts as zero (cosine): 1e-12 squared.
_EPS = 1e-24


def _check_embeddings(emb: Any) -> None:
    if not isinstance(emb, nd.NDArray):
        raise ValueError(f"embeddings must be an mx.nd.NDArray, got {type(emb).__name__}")
    if emb.ndim != 2 or emb.shape[0] < 1:
        raise ValueError(f"embeddings must have shape (B, D) with B >= 1, got {emb.shape}")


class Distance:
    """A registered distance: ``squared``, ``euclidean`` or ``cosine``.

    Parameters
    ----------
    name : str
        One of :data:`METRICS`.
    """

    def __init__(self, name: str) -> None:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}")
        self.name = name

    def __repr__(self) -> str:
        return f"Distance({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Distance) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def pairwise(self, emb: nd.NDArray) -> nd.NDArray:
        """All pairwise distances between the rows of ``emb``, on ``emb``'s context.

        Parameters
        ----------
        emb : (B, D) NDArray float32

        Returns
        -------
        (B, B) NDArray, same dtype and context as ``emb``
            Symmetric, clipped to ``>= 0`` (``[0, 2]`` for cosine), diagonal exactly 0.
            Differentiable with finite gradients, including at zero distance.
        """
        _check_embeddings(emb)
        return self._pairwise(nd, emb, emb.shape[0], {"ctx": emb.context}, emb.dtype)

    def _pairwise(
        self,
        F: Any,
        emb: Any,
        b: int,
        where: Dict[str, Any],
        dtype: Any = "float32",
        diagonal: bool = True,
    ) -> Any:
        """:meth:`pairwise` for ``F = mx.nd`` or ``mx.sym`` (inside a hybridized graph),
        for ``b`` rows; ``where`` holds the context new NDArrays go to (empty for symbols).
        ``diagonal=False`` skips zeroing the diagonal (it then holds rounding noise >= 0)
        for callers that never read it; every other entry is the same to the bit."""
        off_diag = 1 - F.eye(b, dtype=dtype, **where) if diagonal else None
        gram = F.dot(emb, emb, transpose_b=True)
        if self.name == "cosine":
            # Clamp before the root: sqrt's slope at 0 is infinite, the clamp's gradient is 0.
            inv = F.rsqrt(F.maximum(F.sum(emb * emb, axis=1), _EPS))
            cos = F.broadcast_mul(F.broadcast_mul(gram, inv.reshape((-1, 1))), inv.reshape((1, -1)))
            cos_dist = F.clip(1.0 - cos, 0.0, 2.0)
            return cos_dist * off_diag if diagonal else cos_dist
        sq_norm = F.sum(emb * emb, axis=1)
        # |a|^2 + |b|^2 - 2 a.b can come out slightly negative by cancellation: clip it.
        sq = F.relu(
            F.broadcast_add(sq_norm.reshape((-1, 1)), sq_norm.reshape((1, -1))) - 2.0 * gram
        )
        if diagonal:
            sq = sq * off_diag
        return sq if self.name == "squared" else _root(F, sq)

    def paired(self, F: Any, a: Any, b: Any) -> Any:
        """Distances of paired rows, ``(N, D), (N, D) -> (N,)``; ``F`` is ``mx.nd`` or
        ``mx.sym`` (usable inside ``hybrid_forward``). Agrees with :meth:`pairwise`."""
        if self.name == "cosine":
            dot = F.sum(a * b, axis=1)
            inv_a = F.rsqrt(F.maximum(F.sum(a * a, axis=1), _EPS))
            inv_b = F.rsqrt(F.maximum(F.sum(b * b, axis=1), _EPS))
            return F.clip(1.0 - dot * inv_a * inv_b, 0.0, 2.0)
        sq = F.sum(F.square(a - b), axis=1)
        return sq if self.name == "squared" else _root(F, sq)


def _root(F: Any, sq: Any) -> Any:
    """``sqrt(sq)`` with finite gradients at 0 (the root of 1 there, then zeroed)."""
    zero = sq <= 0
    return F.sqrt(sq + zero) * (1 - zero)


#: The registered distances by name.
DISTANCES: Dict[str, Distance] = {name: Distance(name) for name in METRICS}


def get_distance(metric: Union[str, Distance]) -> Distance:
    """The :class:`Distance` named ``metric`` (a Distance passes through).

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    if isinstance(metric, Distance):
        return metric
    if metric not in DISTANCES:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    return DISTANCES[metric]


def pairwise_distances(emb: nd.NDArray, metric: Union[str, Distance] = "squared") -> nd.NDArray:
    """:meth:`Distance.pairwise` of ``metric`` (a name or Distance): ``(B, D) -> (B, B)``;
    a ValueError when ``emb`` is not 2-D or the metric is unknown."""
    _check_embeddings(emb)
    return get_distance(metric).pairwise(emb)
