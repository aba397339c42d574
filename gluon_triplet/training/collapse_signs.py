"""A collapsed embedding seen in an epoch's metrics: why it looks collapsed, what to try,
and ``CollapseCallback``, which warns of it."""

from __future__ import annotations

import logging

from .hooks import Callback

__all__ = ["CollapseCallback", "collapse_advice", "collapse_reason"]

logger = logging.getLogger("gluon_triplet")


def collapse_reason(test, margin, split="test"):
    """Why an epoch's test (or ``split``'s) metrics look like a collapsed embedding, or None.

    Two signs, read from ``metrics.evaluate_embeddings`` output (squared L2 distances on
    the fixed test triplets):

    - every embedding (nearly) the same point: the mean anchor-negative distance is below
      1e-4 of the squared mean embedding norm (all-zero embeddings included);
    - collapse to the margin: at least 99% of the test triplets are active (loss > 0) while
      the mean anchor-negative distance is below 5% of the margin, so the loss sits near
      ``margin`` and the net no longer separates anything.

    Parameters
    ----------
    test : dict
        Test metrics with ``mean_an_dist``, ``embedding_norm`` and ``active_fraction``.
    margin : float
    split : str
        The split the metrics are of, named in the reason.

    Returns
    -------
    str or None
    """
    an = test.get("mean_an_dist")
    if an is None:
        return None
    norm = float(test.get("embedding_norm", 0.0))
    if an <= 1e-4 * norm**2:
        return (
            f"every {split} embedding is nearly the same point (mean anchor-negative distance "
            f"{an:.3g}, mean |emb| {norm:.3g})"
        )
    active = test.get("active_fraction")
    if active is not None and active >= 0.99 and an < 0.05 * margin:
        return (
            f"{active:.0%} of the {split} triplets violate the margin while their distances are "
            f"near zero (mean anchor-negative distance {an:.3g}, margin {margin:g})"
        )
    return None


def collapse_advice(config, lr=None):
    """What to change after a collapse: a lower learning rate, then each setting known to
    help that ``config`` does not already have (never a default the run already used)."""
    lr = getattr(config, "lr", None) if lr is None else lr
    advice = ["a lower --lr" + (f" (e.g. --lr {lr / 10:.2g})" if lr else "")]
    epochs = getattr(config, "epochs", None)  # None: automatic, at least 10
    # A warm-up shorter than an epoch (none, or a short run's automatic 0.3): a longer one.
    if (getattr(config, "warmup_epochs", 0) or 0) < 1 and (epochs is None or epochs > 1):
        advice.append("--warmup-epochs 1")
    size = getattr(config, "image_size", None)
    if size and int(str(size).split("x")[0]) > 64:
        advice.append("a smaller --image-size (e.g. --image-size 64)")
    if getattr(config, "output", "linear") == "relu":
        advice.append("--output linear (a ReLU output can die to all zeros)")
    if not getattr(config, "normalize", True):
        advice.append("--normalize")
    if getattr(config, "miner", "semi-hard") in ("batch-hard", "batch-all"):
        advice.append("--miner semi-hard")
    if getattr(config, "margin", 0.2) > 0.2:
        advice.append("a smaller --margin")
    return advice


class CollapseCallback(Callback):
    """Logs a WARNING, with what to try, when a trained epoch's embedding has collapsed
    (see :func:`collapse_reason`, on the epoch's test metrics, or its validation metrics
    when it has none): at the first such epoch, and again if the last one is."""

    def __init__(self):
        self.first = None

    def _check(self, trainer, final=False):
        record = trainer.history[-1] if trainer.history else {}
        if record.get("epoch", 0) < 1:
            return
        # The test split when this epoch scored it, else the validation split.
        split = "test" if record.get("test") else "validation"
        metrics = record.get("test") or record.get("val") or {}
        reason = collapse_reason(metrics, trainer.config.margin, split)
        if reason is None or (self.first is not None and not final):
            return
        if final and self.first == record["epoch"]:
            return
        if self.first is None:
            self.first = record["epoch"]
        when = "still collapsed at the end" if final else "collapsed"
        logger.warning(
            "epoch %d: the embedding %s: %s; try %s",
            record["epoch"],
            when,
            reason,
            ", ".join(collapse_advice(trainer.config)),
        )

    def on_epoch_end(self, trainer):
        self._check(trainer)

    def on_train_end(self, trainer):
        self._check(trainer, final=True)
