"""Learning-rate schedules of a run: constant or cosine, with an optional linear warm-up."""

from __future__ import annotations

import mxnet as mx

from ..config import resolve_schedule

__all__ = ["make_lr_scheduler", "scale_learning_rate"]


def make_lr_scheduler(config, updates_per_epoch: int):
    """The ``mx.lr_scheduler`` a :class:`~gluon_triplet.config.Config` asks for, or None.

    ``config.lr_schedule`` ``"cosine"`` decays ``config.lr`` to 0 over all updates after
    the warm-up; ``"constant"`` keeps it. ``config.warmup_epochs`` > 0 first ramps the
    rate linearly from 0 to ``config.lr`` over that many epochs' updates (a soft start
    for hard mining, whose first steps see only the hardest, noisiest triplets).

    Parameters
    ----------
    config : Config
        Uses ``lr``, ``lr_schedule``, ``epochs`` and ``warmup_epochs`` (0 if absent);
        an automatic (None) ``lr`` or ``warmup_epochs`` is resolved for ``epochs``.
    updates_per_epoch : int
        Optimizer updates in one epoch (>= 1), counted where the optimizer runs.

    Returns
    -------
    mx.lr_scheduler.LRScheduler or None
        None for a constant rate without warm-up (or 0 epochs): the optimizer's own rate.
    """
    updates_per_epoch = max(1, int(updates_per_epoch))
    lr, warmup_epochs = resolve_schedule(
        config.lr, getattr(config, "warmup_epochs", 0), config.epochs
    )
    warmup = int(round(warmup_epochs * updates_per_epoch))
    total = config.epochs * updates_per_epoch
    if config.epochs <= 0 or (config.lr_schedule == "constant" and warmup == 0):
        return None
    # Config.validate keeps warmup_epochs < epochs, so the cosine part has >= 1 update.
    warmup = min(warmup, total - 1)
    if config.lr_schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(
            max_update=max(1, total), base_lr=lr, warmup_steps=warmup
        )
    # factor 1: the rate never decays after the warm-up.
    return mx.lr_scheduler.FactorScheduler(
        step=max(1, total), factor=1.0, base_lr=lr, warmup_steps=warmup
    )


def scale_learning_rate(gluon_trainer, config, scale: float) -> float:
    """Make ``gluon_trainer`` train at ``scale`` times the rate ``config`` asks for, on the
    same schedule (its warm-up and cosine decay keep their shape); returns the new peak
    rate."""
    lr = float(config.lr) * float(scale)
    scheduler = getattr(gluon_trainer.optimizer, "lr_scheduler", None)
    if scheduler is None:
        gluon_trainer.set_learning_rate(lr)
    else:
        # What mx.lr_scheduler's schedules read at every update: the peak (the cosine
        # keeps it as base_lr_orig and recomputes base_lr from it), and the end of the
        # warm-up (set from the peak when they were made).
        scheduler.base_lr = lr
        scheduler.warmup_final_lr = lr
        if hasattr(scheduler, "base_lr_orig"):
            scheduler.base_lr_orig = lr
    return lr
