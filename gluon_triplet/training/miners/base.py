"""The base of every miner: :class:`Miner` (``mine`` for NDArrays, ``select`` inside a
hybridized graph) and the input checks the miners share."""

from __future__ import annotations

import numpy as np
from mxnet import autograd, nd

from ..distances import _check_embeddings, get_distance

__all__ = ["Miner"]

# Index arithmetic in the (B, <= 2B) searches is float32: exact while B * 2B < 2**24.
_MAX_BATCH = 2048


def _labels_like(labels, emb):
    """``(B,)`` labels as NDArray on ``emb``'s context (validated)."""
    b = emb.shape[0]
    if not isinstance(labels, nd.NDArray):
        labels = nd.array(np.asarray(labels), ctx=emb.context)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape((-1,))
    if labels.shape != (b,):
        raise ValueError(
            f"labels must have shape (B,) = ({b},) to match embeddings {emb.shape}, "
            f"got {labels.shape}"
        )
    return labels.as_in_context(emb.context)


def _where(F, like):
    """Keyword arguments placing a new array beside ``like``: an NDArray needs its
    context; a symbol's new arrays go where the graph runs."""
    return {"ctx": like.context} if F is nd else {}


def _masks(F, labels, b, where):
    """Positive (same label, not the anchor) and negative ``(B, B)`` float32 masks."""
    same = F.broadcast_equal(labels.reshape((-1, 1)), labels.reshape((1, -1)))
    same = F.cast(same, "float32")
    pos = same * (1 - F.eye(b, **where))
    neg = 1 - same
    return pos, neg


class Miner:
    """Base class: selects triplets from one batch of embeddings.

    Subclasses implement :meth:`_select`, written once for ``F = mx.nd`` and ``mx.sym``:
    :meth:`mine` validates NDArray inputs and selects without recording for autograd;
    :meth:`select` is the same selection inside a hybridized graph (the trainer's step,
    :class:`~gluon_triplet.training.batching.MinedStep`), where it costs no Python per operation.

    Parameters
    ----------
    margin : float
        The ``TripletLoss`` margin (used by miners that look at the loss).
    metric : {"squared", "euclidean", "cosine"} or Distance
        Distance used for *selection*; train with the loss of the same distance
        (:func:`~gluon_triplet.training.losses.triplet_loss`) so that "active" and "semi-hard"
        mean exactly what the loss sees.
    """

    def __init__(self, margin=1.0, metric="squared"):
        self.distance = get_distance(metric)
        self.margin = float(margin)
        self.metric = self.distance.name

    def __repr__(self):
        return f"{type(self).__name__}(margin={self.margin}, metric={self.metric!r})"

    def mine(self, emb, labels, block=None):
        """Select triplets.

        Parameters
        ----------
        emb : (B, D) NDArray float32
            The batch's embeddings (the selection does not backpropagate).
        labels : (B,) NDArray float32 or int, same context
            ``(B, 1)`` is accepted; array-likes are copied to ``emb``'s context.
        block : int, optional
            Declares the batch's layout: blocks of ``block`` consecutive rows sharing a
            label, each block's label different (a P x K batch of
            :class:`~gluon_triplet.data.samplers.PKBatchSampler`, ``block = K``). A miner
            with a faster path for that layout takes it (see :meth:`uses_blocks`); the
            result is the same as without ``block``.

        Returns
        -------
        anchor_idx, positive_idx, negative_idx : (M,) NDArray int32
            Row indices into ``emb``; ``M`` depends only on ``B`` (see the subclass).
        weight : (M,) NDArray float32
            1.0 for a selected triplet, 0.0 for padding. Padding rows hold valid indices
            (so a gather never fails) but mean nothing.

        Raises
        ------
        ValueError
            ``emb`` not ``(B, D)``, labels not ``(B,)``, or not laid out in blocks of ``block``.
        """
        _check_embeddings(emb)
        b = emb.shape[0]
        with autograd.pause():
            emb = emb.detach()
            labels = _labels_like(labels, emb)
            where = _where(nd, emb)
            if self.uses_blocks(b, block):
                _check_blocks(labels, b, block)
                return self._cast_indices(
                    nd, *self._select_blocks(nd, emb, labels, b, block, where)
                )
            pos, neg = _masks(nd, labels, b, where)
            return self._finish(nd, emb, pos, neg, b, where)

    def select(self, F, emb, labels, batch_size, block=None):
        """:meth:`mine` for ``F = mx.sym`` (or ``mx.nd``), without checks or autograd pause.

        Parameters
        ----------
        F : mx.sym or mx.nd
        emb : (B, D) float32
            Cut from the gradient by the caller (``F.BlockGrad``).
        labels : (B,) float32
        batch_size : int
            ``B``: a symbol has no shape, and the selection's arrays are sized by it.
        block : int, optional
            As in :meth:`mine`, but not checked: the caller guarantees the layout.

        Returns
        -------
        As :meth:`mine`.
        """
        where = _where(F, emb)
        if self.uses_blocks(batch_size, block):
            rows = self._select_blocks(F, emb, labels, batch_size, block, where)
            return self._cast_indices(F, *rows)
        pos, neg = _masks(F, labels, batch_size, where)
        return self._finish(F, emb, pos, neg, batch_size, where)

    def uses_blocks(self, batch_size, block):
        """Whether :meth:`select` takes its block-layout path for these sizes (base: never)."""
        return False

    def _select_blocks(self, F, emb, labels, b, k, where):  # pragma: no cover - abstract
        """Rows ``anchor, positive, negative, weight`` (the weight float32) of a batch
        laid out in blocks of ``k`` (see :meth:`mine`); the same rows :meth:`_select`
        returns for it."""
        raise NotImplementedError

    @staticmethod
    def _cast(F, a, p, n, w):
        return F.cast(a, "int32"), F.cast(p, "int32"), F.cast(n, "int32"), F.cast(w, "float32")

    @staticmethod
    def _cast_indices(F, a, p, n, w):
        return F.cast(a, "int32"), F.cast(p, "int32"), F.cast(n, "int32"), w

    def _finish(self, F, emb, pos, neg, b, where):
        dist = self.distance._pairwise(F, emb, b, where, emb.dtype if F is nd else "float32")
        return self._cast(F, *self._select(F, dist, pos, neg, b, where, emb))

    def num_triplets(self, batch_size):
        """``M``, the number of rows :meth:`mine` returns for a batch of ``batch_size``."""
        raise NotImplementedError

    def _select(self, F, dist, pos, neg, b, where, emb):  # pragma: no cover - abstract
        """Rows ``anchor, positive, negative, weight`` from the ``(b, b)`` distances and
        masks; ``where`` places new arrays (see :func:`_where`)."""
        raise NotImplementedError


def _check_batch(miner, b):
    if b > _MAX_BATCH:
        raise ValueError(f"{type(miner).__name__}: batch size {b} > {_MAX_BATCH}")


def _in_blocks(labels: np.ndarray, block: int) -> bool:
    """Whether every row of ``labels`` ``(R, B)`` is blocks of ``block`` equal labels,
    the blocks' labels distinct (the layout ``block=`` declares)."""
    blocks = labels.reshape(len(labels), -1, block)
    firsts = np.sort(blocks[:, :, 0], axis=1)
    return bool((blocks == blocks[:, :, :1]).all() and (firsts[:, 1:] != firsts[:, :-1]).all())


def _check_blocks(labels, b, block):
    """Raise ValueError unless ``labels`` ``(B,)`` are laid out as ``block=`` declares."""
    host = labels.asnumpy() if isinstance(labels, nd.NDArray) else np.asarray(labels)
    if not _in_blocks(host.reshape(1, b), block):
        raise ValueError(
            f"block={block}: the labels are not {b // block} blocks of {block} rows with "
            "one label each, distinct between blocks"
        )


def _check_size(name, value):
    if value is not None and int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return None if value is None else int(value)
