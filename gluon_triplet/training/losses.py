"""Triplet losses: the hinge ``max(d(a, p) - d(a, n) + margin, 0)`` under the miner's
distance (``gluon.loss.TripletLoss`` for squared L2), and the soft-margin loss."""

from __future__ import annotations

from typing import Any, Union

from mxnet import gluon

from .distances import Distance, get_distance

__all__ = [
    "DistanceTripletLoss",
    "SoftMarginTripletLoss",
    "triplet_loss",
    "triplet_loss_from_config",
]

# Added under the square root: its slope at 0 is infinite, and the padding triplets
# (a, a, a) that miners return sit exactly there.
_SQRT_EPS = 1e-12


class SoftMarginTripletLoss(gluon.loss.Loss):
    """Soft-margin triplet loss (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss", 2017).

    ``L(a, p, n) = softplus(d(a, p) - d(a, n)) = log(1 + exp(d(a, p) - d(a, n)))``: the
    hinge of ``gluon.loss.TripletLoss`` smoothed, with no margin. Called like ``TripletLoss``.

    Parameters
    ----------
    squared : bool
        False (default, as in the paper): ``d`` is the Euclidean distance; True: the
        squared one, as ``TripletLoss`` uses.
    weight : float, optional
        Global scalar weight, as in every Gluon loss.
    batch_axis : int
        The axis that indexes samples (0).

    Inputs: ``pred`` (anchors), ``positive``, ``negative``, each ``(B, D)`` float32.
    Output: ``(B,)`` float32.
    Gradients are finite everywhere, including at zero distance.
    """

    def __init__(self, squared: bool = False, weight=None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._squared = bool(squared)

    def hybrid_forward(self, F, pred, positive, negative):
        positive = F.reshape_like(positive, pred)
        negative = F.reshape_like(negative, pred)
        d_ap = F.sum(F.square(positive - pred), axis=self._batch_axis, exclude=True)
        d_an = F.sum(F.square(negative - pred), axis=self._batch_axis, exclude=True)
        if not self._squared:
            d_ap = F.sqrt(d_ap + _SQRT_EPS)
            d_an = F.sqrt(d_an + _SQRT_EPS)
        # softrelu is MXNet's softplus, computed stably for large arguments.
        loss = F.Activation(d_ap - d_an, act_type="softrelu")
        return loss if self._weight is None else loss * self._weight


class DistanceTripletLoss(gluon.loss.Loss):
    """``max(d(a, p) - d(a, n) + margin, 0)`` per triplet, for any :class:`Distance`.

    Inputs: ``anchor``, ``positive``, ``negative``, each ``(N, D)`` float32. Output: ``(N,)``.

    Parameters
    ----------
    distance : str or Distance
    margin : float
    """

    def __init__(
        self, distance: Union[str, Distance], margin: float = 1.0, weight: Any = None, **kwargs
    ) -> None:
        super().__init__(weight, 0, **kwargs)
        self.distance = get_distance(distance)
        self._margin = float(margin)

    def hybrid_forward(self, F, anchor, positive, negative):
        gap = self.distance.paired(F, anchor, positive) - self.distance.paired(F, anchor, negative)
        return F.relu(gap + self._margin)


def triplet_loss(distance: Union[str, Distance], margin: float) -> gluon.loss.Loss:
    """The triplet loss under ``distance``: ``gluon.loss.TripletLoss`` for ``squared``,
    else :class:`DistanceTripletLoss`."""
    distance = get_distance(distance)
    if distance.name == "squared":
        return gluon.loss.TripletLoss(margin=margin)
    return DistanceTripletLoss(distance, margin=margin)


def triplet_loss_from_config(
    config: Any, distance: Union[str, Distance, None] = None
) -> gluon.loss.Loss:
    """The loss a :class:`~gluon_triplet.config.Config` asks for: with ``soft_margin``
    :class:`SoftMarginTripletLoss`, else :func:`triplet_loss` under ``distance`` (default
    ``config.distance``)."""
    if config.soft_margin:
        return SoftMarginTripletLoss()
    return triplet_loss(config.distance if distance is None else distance, config.margin)
