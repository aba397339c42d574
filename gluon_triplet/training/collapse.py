"""Collapse is never silent: a callback that watches every loss read-back of the training
loop, puts back the weights of the epoch's start with a lower learning rate when the
embedding collapses, and stops the run with what to change when that does not help.

A collapsed embedding maps every sample to (nearly) one point. Two signs, read at each
loss read-back (every ``config.log_every`` batches and at an epoch's last batch) from
the trainer's ``window`` (the mean loss and active fraction since the previous read-back)
and from the embedding of a fixed probe of training samples:

- every probe embedding (nearly) the same point: their mean squared distance is below
  1e-4 of their mean squared norm (all-zero embeddings included), or (hinge losses) below
  1% of the margin, where no triplet can be satisfied;
- the loss pinned at the margin: at least 99% of the triplets active, the mean loss within
  1% of the margin, and the probe's mean squared distance below 5% of the margin (the
  hinge loss ``d(a,p) - d(a,n) + margin`` then equals the margin because every distance
  is about 0).

Either sign has to hold at ``patience`` read-backs in a row: an untrained net starts with
the loss near the margin, and one noisy read-back is no collapse.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np
from mxnet import gluon

from ..errors import CollapseError
from .collapse_signs import collapse_advice, collapse_reason
from .hooks import Callback
from .records import best_record
from .schedule import scale_learning_rate

__all__ = [
    "CollapseGuard",
    "probe_collapse_reason",
    "probe_spread",
    "rewind",
    "snapshot",
]

logger = logging.getLogger("gluon_triplet")

#: Training samples whose embedding the guard watches.
PROBE_SAMPLES = 128


def probe_spread(emb: np.ndarray):
    """``(spread, norm2)``: the mean squared distance between two different probe
    embeddings and their mean squared norm."""
    emb = np.asarray(emb, dtype=np.float64).reshape(len(emb), -1)
    norm2 = float((emb**2).sum(axis=1).mean())
    # Over all ordered pairs (i, j), i != j, from the deviations from the mean: no N x N.
    n = len(emb)
    centred = emb - emb.mean(axis=0)
    return 2.0 * float((centred**2).sum(axis=1).mean()) * n / max(n - 1, 1), norm2


def probe_collapse_reason(
    emb: np.ndarray, window: Optional[Dict[str, float]], config
) -> Optional[str]:
    """Why a probe's embedding and the last loss window look collapsed, or None.

    Parameters
    ----------
    emb : (N, D) float32
        Embeddings of the probe samples (N >= 2).
    window : dict or None
        ``TripletTrainer.window``: mean ``loss`` and ``active_fraction``.
    config : Config
        Uses ``margin`` and ``soft_margin`` (whose loss has no margin to pin to).
    """
    spread, norm2 = probe_spread(emb)
    hinge = not getattr(config, "soft_margin", False)
    margin = float(config.margin)
    if spread <= 1e-4 * norm2 or (hinge and spread <= 0.01 * margin):
        return (
            f"every probe embedding is nearly the same point (mean squared distance "
            f"{spread:.3g}, mean squared norm {norm2:.3g}, margin {margin:g})"
        )
    if window is None or not hinge:
        return None
    loss, active = window["loss"], window["active_fraction"]
    if active >= 0.99 and abs(loss - margin) <= 0.01 * margin and spread < 0.05 * margin:
        return (
            f"the loss is pinned at the margin ({loss:.4f}, margin {margin:g}) with "
            f"{active:.1%} of the triplets active and the embeddings within "
            f"{spread:.3g} of each other"
        )
    return None


def snapshot(trainer) -> Optional[Dict[str, Any]]:
    """A copy of what :func:`rewind` puts back: the parameters, the optimizer state and
    the weight average; None where that cannot be done (a ``dist_*`` kvstore keeps the
    optimizer state on its servers; parameters still waiting for their first forward)."""
    from ..runs.optimizer import optimizer_state

    if getattr(trainer, "kvstore", None) is not None:
        return None
    try:
        params = {
            name: [a.copy() for a in p.list_data()]
            for name, p in trainer.net.collect_params().items()
        }
    except gluon.parameter.DeferredInitializationError:
        return None
    average = trainer.average.snapshot() if trainer.average is not None else None
    return {"params": params, "optimizer": optimizer_state(trainer.trainer), "average": average}


def rewind(trainer, state: Dict[str, Any], lr_scale: float) -> float:
    """Put a :func:`snapshot` back into ``trainer``, multiply its learning rate by
    ``lr_scale`` and have the current epoch start again; returns the new peak rate."""
    from ..runs.optimizer import load_optimizer_state

    for name, p in trainer.net.collect_params().items():
        for target, value in zip(p.list_data(), state["params"][name]):
            value.copyto(target)
    gluon_trainer = trainer.trainer
    if gluon_trainer._kvstore is not None:
        # A local kvstore updating on itself keeps its own copy of the weights: the next
        # step makes a new one from the net's (as a Parameter.reset_ctx does).
        gluon_trainer._reset_kvstore()
    arrays, meta = state["optimizer"]
    position = gluon_trainer.optimizer.num_update
    load_optimizer_state(gluon_trainer, arrays, meta)  # it copies them
    # The schedule goes on from where it was: a rewind changes the weights, not the plan.
    gluon_trainer.optimizer.num_update = max(position, int(meta["num_update"]))
    if trainer.average is not None and state["average"] is not None:
        trainer.average.rewind(state["average"])
    trainer.lr_scale *= lr_scale
    lr = scale_learning_rate(gluon_trainer, trainer.config, trainer.lr_scale)
    trainer.restart_epoch = True
    return lr


class CollapseGuard(Callback):
    """Watches every loss read-back for a collapse (see the module); on one, puts back the
    last good weights and their optimizer state with ``lr_factor`` times the learning rate
    and trains the current epoch again, at most ``max_tries`` times in a run; then
    raises :class:`~gluon_triplet.errors.CollapseError`. Each event (epoch, batch, reason,
    action) goes into ``trainer.events`` (``metrics.json``'s ``events``) and the log.

    The last good weights are those of the start of the latest epoch that followed an
    epoch whose every read-back had the probe spread over 5% of the margin (for the hinge
    loss) and no sign of collapse, else the initial weights.

    Parameters
    ----------
    lr_factor : float
    max_tries : int
    patience : int
        Read-backs in a row that must show a collapse.
    probe : int
        Training samples embedded at each read-back.
    """

    def __init__(self, lr_factor=0.1, max_tries=2, patience=2, probe=PROBE_SAMPLES):
        self.lr_factor = float(lr_factor)
        self.max_tries = int(max_tries)
        self.patience = int(patience)
        self.probe_size = int(probe)
        self.probe: Optional[np.ndarray] = None
        self.state: Optional[Dict[str, Any]] = None
        self.state_epoch = 0
        self.clean = True
        self.streak = 0
        self.tries = 0

    def on_train_begin(self, trainer):
        x = trainer.train_set.x
        rng = np.random.default_rng(trainer.config.seed)
        pick = np.sort(rng.choice(len(x), size=min(self.probe_size, len(x)), replace=False))
        self.probe = np.asarray(x[pick], dtype=np.float32)  # decoded once when streamed
        self.tries = sum(1 for e in trainer.events if e.get("action", "").startswith("rewound"))

    def on_epoch_begin(self, trainer):
        if self.state is None or (self.clean and self.state_epoch != trainer.epoch):
            self.state, self.state_epoch = snapshot(trainer), trainer.epoch
        self.clean = True

    def on_batch_end(self, trainer):
        if trainer.window is None or self.probe is None or len(self.probe) < 2:
            return
        emb = trainer.embed(self.probe)
        reason = probe_collapse_reason(emb, trainer.window, trainer.config)
        config = trainer.config
        spread = probe_spread(emb)[0]
        if reason or (not config.soft_margin and spread < 0.05 * config.margin):
            self.clean = False
        self.streak = self.streak + 1 if reason else 0
        if self.streak < self.patience:
            return
        event = {"epoch": trainer.epoch, "batch": trainer.batch + 1, "reason": reason}
        lr = trainer.config.lr * trainer.lr_scale
        if self.state is not None and self.tries < self.max_tries:
            self.tries += 1
            new_lr = rewind(trainer, self.state, self.lr_factor)
            event["action"] = (
                f"rewound to the weights of the start of epoch {self.state_epoch} and lowered "
                f"the learning rate from {lr:.3g} to {new_lr:.3g} (try {self.tries} of "
                f"{self.max_tries})"
            )
            trainer.events.append(event)
            logger.warning(
                "epoch %d, batch %d: the embedding collapsed: %s; %s",
                event["epoch"],
                event["batch"],
                reason,
                event["action"],
            )
            self.streak = 0
            return
        tried = f"after {self.tries} tries with a lower learning rate" if self.tries else ""
        event["action"] = f"stopped {tried}".strip()
        trainer.events.append(event)
        raise CollapseError(
            f"the embedding collapsed at epoch {event['epoch']}, batch {event['batch']}"
            f"{' ' + tried if tried else ''}: {reason}; try "
            + ", ".join(collapse_advice(trainer.config, lr))
        )

    def on_train_end(self, trainer):
        """Fail a run whose chosen weights are collapsed: with a validation split, when
        every trained epoch's validation embedding looks collapsed (the best is chosen
        among the others); without one, when the probe's embedding is one point."""
        history = [r for r in trainer.history if r["epoch"] > 0]
        if not history:
            return
        margin = trainer.config.margin
        best = best_record(trainer.history, margin)
        if best.get("val"):
            reason = collapse_reason(best["val"], margin)
            where = f"the validation split (epoch {best['epoch']}, the best)"
        elif self.probe is not None and len(self.probe) >= 2:
            reason = probe_collapse_reason(trainer.embed(self.probe), None, trainer.config)
            where = f"the training probe (epoch {history[-1]['epoch']}, the last)"
        else:
            return
        if reason is None:
            return
        lr = trainer.config.lr * trainer.lr_scale
        event = {"epoch": best["epoch"], "batch": None, "reason": reason, "action": "stopped"}
        trainer.events.append(event)
        raise CollapseError(
            f"the embedding is collapsed at the end of training on {where}: {reason}; try "
            + ", ".join(collapse_advice(trainer.config, lr))
        )
