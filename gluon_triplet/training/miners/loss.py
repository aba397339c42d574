"""The loss of mined rows: gather them, apply a triplet loss, average by weight."""

from __future__ import annotations

from mxnet import nd

from ..distances import _check_embeddings

__all__ = ["mined_loss"]


def mined_loss(loss_fn, emb, anchor_idx, positive_idx, negative_idx, weight):
    """Weighted mean triplet loss over mined rows.

    Parameters
    ----------
    loss_fn : gluon.loss.TripletLoss
        Or any loss called as ``loss_fn(anchor, positive, negative) -> (M,)``.
    emb : (B, D) NDArray float32
        The embeddings the indices refer to (recorded, so gradients reach the net).
    anchor_idx, positive_idx, negative_idx : (M,) NDArray int
    weight : (M,) NDArray float32
        Per-triplet weight, as returned by :meth:`Miner.mine`.

    Returns
    -------
    (1,) NDArray
        ``sum(weight * loss) / sum(weight)``, and exactly 0 (with zero, finite gradients)
        when ``sum(weight) == 0``.

    Raises
    ------
    ValueError
        ``emb`` not 2-D or the four arrays not all ``(M,)``.
    """
    _check_embeddings(emb)
    arrays = (anchor_idx, positive_idx, negative_idx, weight)
    shapes = [tuple(x.shape) for x in arrays]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1:
        raise ValueError(
            f"anchor_idx, positive_idx, negative_idx and weight must all be (M,); got {shapes}"
        )
    m = shapes[0][0]
    # One gather for the three roles, as the trainer does for offline triplets.
    rows = nd.take(emb, nd.concat(anchor_idx, positive_idx, negative_idx, dim=0))
    loss = loss_fn(rows[:m], rows[m : 2 * m], rows[2 * m :])
    weight = weight.astype(loss.dtype)
    total = nd.sum(weight)
    denom = nd.where(total > 0, total, nd.ones_like(total))
    return nd.sum(loss * weight) / denom
