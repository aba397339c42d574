"""Callbacks: how logging, checkpoints and progress attach to the training loop.

The loop in :mod:`gluon_triplet.train` knows nothing of any of them; it calls the hooks
below on every callback it was given, passing itself as ``trainer``. What a callback may
read from ``trainer``:

``trainer.net``           the Gluon embedding network
``trainer.config``        the run's :class:`~gluon_triplet.config.Config`
``trainer.epoch``         the current epoch, counting from 1
``trainer.batch``         the batch index within the epoch, counting from 0 (in ``on_batch_end``)
``trainer.num_batches``   batches per epoch
``trainer.history``       list of per-epoch records, newest last; each is a dict
                          ``{"epoch": int, "time": float, "train": {...}, "test": {...}}``
``trainer.embed(x)``      ``(N, ...) -> (N, D) float32`` numpy embeddings of the current net
"""

from __future__ import annotations

import json
import logging
import os
import sys

from .config import atomic_write_text

__all__ = ["Callback", "CallbackList", "CheckpointCallback", "MetricsCallback", "ProgressCallback"]

logger = logging.getLogger("gluon_triplet")


class Callback:
    """Base class: override the hooks you need; each receives the running trainer."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer):
        pass

    def on_batch_end(self, trainer):
        pass

    def on_epoch_end(self, trainer):
        pass

    def on_train_end(self, trainer):
        pass


class CallbackList(Callback):
    """Calls each callback's hook in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def on_train_begin(self, trainer):
        for cb in self.callbacks:
            cb.on_train_begin(trainer)

    def on_epoch_begin(self, trainer):
        for cb in self.callbacks:
            cb.on_epoch_begin(trainer)

    def on_batch_end(self, trainer):
        for cb in self.callbacks:
            cb.on_batch_end(trainer)

    def on_epoch_end(self, trainer):
        for cb in self.callbacks:
            cb.on_epoch_end(trainer)

    def on_train_end(self, trainer):
        for cb in self.callbacks:
            cb.on_train_end(trainer)


def format_metrics(record):
    """One log line for an epoch record."""
    train, test = record.get("train", {}), record.get("test", {})
    parts = [f"epoch {record['epoch']:>3}"]
    if train:
        parts.append(f"loss {train['loss']:.4f} active {train['active_fraction']:.3f}")
    if test:
        parts.append(
            f"test triplet-acc {test['triplet_accuracy']:.4f} P@1 {test['precision_at_1']:.4f} "
            f"MAP@R {test['map_at_r']:.4f} |emb| {test['embedding_norm']:.3f}"
        )
    if record.get("time"):
        parts.append(f"{record['time']:.1f}s")
    return " | ".join(parts)


class ProgressCallback(Callback):
    """A progress bar per epoch (only on a terminal) and a log line per epoch."""

    def __init__(self, bar=None):
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self._bar = None

    def on_train_begin(self, trainer):
        logger.info("%s", format_metrics(trainer.history[-1]) + " (before training)")

    def on_epoch_begin(self, trainer):
        if self.bar_enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=None,
                desc=f"epoch {trainer.epoch}",
                unit="batch",
                leave=False,
                file=sys.stderr,
            )

    def on_batch_end(self, trainer):
        if self._bar is not None:
            if self._bar.total is None:
                self._bar.total = trainer.num_batches
            self._bar.update(1)
            if (trainer.batch + 1) % trainer.config.log_every == 0:
                self._bar.set_postfix(loss=f"{trainer.running_loss:.4f}")

    def on_epoch_end(self, trainer):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        logger.info("%s", format_metrics(trainer.history[-1]))


class CheckpointCallback(Callback):
    """Saves ``model-last.params`` every epoch and ``model-best.params`` on a new best.

    Parameters
    ----------
    run_dir : str
    monitor : str
        ``"<split>/<metric>"`` of the epoch records; higher is better.
    """

    def __init__(self, run_dir, monitor="test/precision_at_1"):
        self.run_dir = run_dir
        self.split, self.metric = monitor.split("/")
        self.best = -float("inf")
        self.best_epoch = None

    def _save(self, net, name):
        path = os.path.join(self.run_dir, name)
        tmp = os.path.join(self.run_dir, f".tmp-{name}")
        net.save_parameters(tmp)
        os.replace(tmp, path)

    def on_epoch_end(self, trainer):
        record = trainer.history[-1]
        self._save(trainer.net, "model-last.params")
        value = record.get(self.split, {}).get(self.metric)
        if value is not None and value > self.best:
            self.best, self.best_epoch = value, record["epoch"]
            self._save(trainer.net, "model-best.params")


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
        trained = [r for r in history if r["epoch"] > 0] or history
        best = max(trained, key=lambda r: r.get("test", {}).get("precision_at_1", -1.0))
        doc = dict(self.extra)
        doc.update({"finished": finished, "final": history[-1], "best": best, "history": history})
        atomic_write_text(self.path, json.dumps(doc, indent=2) + "\n")

    def on_epoch_end(self, trainer):
        self._write(trainer, finished=False)

    def on_train_end(self, trainer):
        self._write(trainer, finished=True)
