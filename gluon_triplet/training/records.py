"""What a run keeps of its epochs: the best epoch, chosen on validation
(:func:`best_record`), the model files and checkpoints (:class:`CheckpointCallback`) and
``metrics.json`` (:class:`MetricsCallback`)."""

from __future__ import annotations

import json
import os

from ..io import atomic_write_text
from ..runs.rundir import RunDir
from .collapse_signs import collapse_reason
from .hooks import Callback

__all__ = ["CheckpointCallback", "MetricsCallback", "SELECTION", "best_record", "selection_key"]


#: The ``(split, metric)`` the best epoch is chosen on: validation MAP@R, never the test.
SELECTION = ("val", "map_at_r")


_MONITOR = "/".join(SELECTION)


def selection_key(record, split, metric, margin=None):
    """How good an epoch record is for choosing the best: None when it lacks ``metric``
    (then the last epoch is the best), else ``(not collapsed, value)``: an epoch whose
    ``split`` metrics look collapsed (:func:`collapse_reason`, with ``margin``) comes after
    every other, whatever its value (a collapsed embedding can still rank a tiny split)."""
    values = record.get(split) or {}
    value = values.get(metric)
    if value is None:
        return None
    healthy = margin is None or collapse_reason(values, margin) is None
    return (int(healthy), value)


def best_record(history, margin=None):
    """The record of the epoch chosen as best: the highest validation MAP@R among the
    epochs that do not look collapsed (the earliest on ties), or the last trained epoch
    when the records have no validation metrics. See :func:`selection_key`."""
    trained = [r for r in history if r["epoch"] > 0] or history
    keys = [selection_key(r, *SELECTION, margin) for r in trained]
    scored = [(k, i) for i, k in enumerate(keys) if k is not None]
    if not scored:
        return trained[-1]
    best = max(k for k, _ in scored)
    return trained[next(i for k, i in scored if k == best)]


class CheckpointCallback(Callback):
    """Saves ``model-last.params`` every epoch and ``model-best.params`` on a new best, and
    (``resumable``) a checkpoint to resume from in ``<run_dir>/checkpoint``
    (see :mod:`gluon_triplet.runs.checkpoint`).

    Parameters
    ----------
    run_dir : str
    monitor : str
        ``"<split>/<metric>"`` of the epoch records; higher is better. Records without it
        (no validation split) make every epoch the best: best is then the last.
    resumable : bool
        Also save the optimizer and trainer state every epoch (skipped with a ``dist_*``
        kvstore, whose optimizer state lives on the servers).
    """

    def __init__(self, run_dir, monitor=_MONITOR, resumable=True):
        self.run_dir = run_dir
        self.split, self.metric = monitor.split("/")
        self.best = None
        self.best_epoch = None
        self.resumable = resumable
        self.checkpoint_epoch = None

    def on_train_begin(self, trainer):
        # A resumed run starts with its history: the best so far is in it.
        for record in trainer.history:
            if record["epoch"] > 0 and self._better(record, trainer):
                self.best, self.best_epoch = self._key(record, trainer), record["epoch"]
            if record["epoch"] > 0:
                self.checkpoint_epoch = record["epoch"]

    def _save(self, net, name):
        from ..runs.checkpoint import save_parameters

        save_parameters(net, os.path.join(self.run_dir, name))

    def on_epoch_end(self, trainer):
        record = trainer.history[-1]
        new_best = self._better(record, trainer)

        def save_models():
            self._save(trainer.net, RunDir.LAST_PARAMS)
            if new_best:
                self._save(trainer.net, RunDir.BEST_PARAMS)

        best_epoch = record["epoch"] if new_best else self.best_epoch
        saved = False
        if self.resumable:
            from ..runs.checkpoint import save_checkpoint, supports_resume

            if supports_resume(trainer):
                # It refuses non-finite parameters before anything is written, and writes
                # the model files before its manifest: the epoch's outputs are one unit.
                save_checkpoint(
                    trainer,
                    RunDir(self.run_dir).checkpoint_dir,
                    best_epoch=best_epoch,
                    before_commit=save_models,
                )
                self.checkpoint_epoch = record["epoch"]
                saved = True
        if not saved:
            save_models()
        if new_best:
            self.best, self.best_epoch = self._key(record, trainer), record["epoch"]

    def _key(self, record, trainer):
        margin = getattr(getattr(trainer, "config", None), "margin", None)
        return selection_key(record, self.split, self.metric, margin)

    def _better(self, record, trainer):
        """Whether ``record`` beats the best so far (see :func:`selection_key`)."""
        key = self._key(record, trainer)
        return key is None or self.best is None or key > self.best


class MetricsCallback(Callback):
    """Keeps ``metrics.json`` in the run dir up to date after every epoch.

    Parameters
    ----------
    path : str
    extra : dict, optional
        Written beside the history (dataset sizes, the raw-pixel baseline, ...).
    """

    def __init__(self, path, extra=None):
        self.path = path
        self.extra = dict(extra or {})

    def _write(self, trainer, finished):
        history = trainer.history
        best = best_record(history, getattr(getattr(trainer, "config", None), "margin", None))
        doc = dict(self.extra)
        doc.update({"finished": finished, "final": history[-1], "best": best})
        split, metric = SELECTION
        chosen = (best.get(split) or {}).get(metric) is not None
        doc["selection"] = {
            "epoch": best["epoch"],
            "split": split if chosen else None,
            "metric": metric if chosen else None,
            "rule": f"highest {split} {metric}" if chosen else "last epoch (no validation split)",
        }
        events = getattr(trainer, "events", None)
        if events:
            doc["events"] = events
        doc["history"] = history
        atomic_write_text(self.path, json.dumps(doc, indent=2) + "\n")

    def write(self, trainer):
        """Write ``metrics.json`` now, unfinished (a run that stops on an error)."""
        self._write(trainer, finished=False)

    def on_epoch_end(self, trainer):
        self._write(trainer, finished=False)

    def on_train_end(self, trainer):
        self._write(trainer, finished=True)
