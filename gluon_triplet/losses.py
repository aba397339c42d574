"""Triplet losses beyond ``gluon.loss.TripletLoss``: the soft-margin triplet loss."""

from __future__ import annotations

from mxnet import gluon

__all__ = ["SoftMarginTripletLoss", "triplet_loss_from_config"]

# Added under the square root: its slope at 0 is infinite, and the padding triplets
# (a, a, a) that miners return sit exactly there.
_SQRT_EPS = 1e-12


class SoftMarginTripletLoss(gluon.loss.Loss):
    """Soft-margin triplet loss (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss", 2017).

    ``L(a, p, n) = softplus(d(a, p) - d(a, n)) = log(1 + exp(d(a, p) - d(a, n)))``: the
    hinge ``max(0, m + d(a, p) - d(a, n))`` of ``gluon.loss.TripletLoss`` with its corner
    smoothed and no margin. It never reaches 0, so triplets that are already right keep
    pulling (gently) instead of dropping out, which keeps batch-hard mining from sitting at
    the margin. Called exactly like ``TripletLoss``.

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


def triplet_loss_from_config(config) -> gluon.loss.Loss:
    """The loss a :class:`~gluon_triplet.config.Config` asks for.

    ``config.soft_margin``: :class:`SoftMarginTripletLoss` (Euclidean distance; the margin
    is then only used by miners that look at it); else ``gluon.loss.TripletLoss(margin)``.
    """
    if getattr(config, "soft_margin", False):
        return SoftMarginTripletLoss()
    return gluon.loss.TripletLoss(margin=config.margin)
