"""Callbacks: how logging, checkpoints and progress attach to the training loop.

The loop in :mod:`gluon_triplet.training.trainer` knows nothing of any of them; it calls the hooks
below on every callback it was given, passing itself as ``trainer``. What a callback may
read from ``trainer``:

``trainer.net``           the Gluon embedding network
``trainer.config``        the run's :class:`~gluon_triplet.config.Config`
``trainer.epoch``         the current epoch, counting from 1
``trainer.batch``         the batch index within the epoch, counting from 0 (in ``on_batch_end``)
``trainer.num_batches``   batches per epoch
``trainer.history``       list of per-epoch records, newest last; each is a dict
                          ``{"epoch": int, "time": float, "train": {...}, "test": {...}}``,
                          plus ``"val": {...}`` with a validation split
``trainer.window``        in ``on_batch_end``: the mean loss and active fraction since the
                          previous loss read-back, or None on a batch without one
``trainer.embed(x)``      ``(N, ...) -> (N, D) float32`` numpy embeddings of the current net
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
from typing import List, Optional

from ..io import atomic_write_text
from ..runs.rundir import RunDir

__all__ = [
    "Callback",
    "CallbackList",
    "CheckpointCallback",
    "CollapseCallback",
    "MetricsCallback",
    "ProgressCallback",
    "SELECTION",
    "best_record",
    "collapse_advice",
    "selection_key",
    "collapse_reason",
]

logger = logging.getLogger("gluon_triplet")

#: The fewest timed batches an epoch-time estimate rests on, unless the epoch is shorter.
MIN_TIMED = 3


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
        if "raw_embedding_norm" in test:
            # Normalised nets: every |emb| is 1; the norm before normalisation shows collapse.
            parts[-1] += f" (before L2 norm {test['raw_embedding_norm']:.3f})"
        if "evaluated_on" in test:
            parts[-1] += f" [{test['evaluated_on']}]"
    if record.get("time"):
        parts.append(f"{record['time']:.1f}s")
    return " | ".join(parts)


class ProgressCallback(Callback):
    """A progress bar per epoch (only on a terminal), a log line per epoch, and early in
    the first epoch trained, an estimate of the epoch's time and of the run's.

    The estimate times the batches after the first ``warmup`` (which include building
    the graph), over ``timed`` batches or until ``budget`` seconds of them are done
    (at least :data:`MIN_TIMED` batches), whichever comes first (a few seconds into
    training), and scales their median to the epoch's batches, so that one batch stalled
    by another job does not set it: it counts decoding, mining and the update, not the
    evaluation after each epoch. While it times, each batch's queued work is waited for,
    so that the clock reads work done, not work queued.
    """

    def __init__(
        self,
        bar=None,
        warmup: int = 2,
        timed: int = 20,
        clock=time.perf_counter,
        sync=None,
        budget: float = 2.0,
    ):
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self._bar = None
        self.warmup, self.timed, self.clock, self.budget = warmup, timed, clock, budget
        # MXNet runs the batches asynchronously: the clock is read once the queued work
        # is done, or it would time the queueing only.
        self.sync = sync if sync is not None else _wait_for_mxnet
        self._estimated = False
        self._clock: Optional[float] = None
        self._times: List[float] = []

    def on_train_begin(self, trainer):
        record = trainer.history[-1]
        note = " (before training)" if record["epoch"] == 0 else " (resumed from here)"
        if record.get("test") or record.get("train") or not record.get("val"):
            logger.info("%s", format_metrics(record) + note)
            note = ""
        self._log_validation(record, note)

    @staticmethod
    def _log_validation(record, note=""):
        val = record.get("val")
        if val:
            logger.info(
                "epoch %3d | validation triplet-acc %.4f P@1 %.4f MAP@R %.4f%s%s",
                record["epoch"],
                val["triplet_accuracy"],
                val["precision_at_1"],
                val["map_at_r"],
                f" [{val['evaluated_on']}]" if "evaluated_on" in val else "",
                note,
            )

    def on_epoch_begin(self, trainer):
        self.close()  # an epoch started again (see TripletTrainer.restart_epoch)
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
        if not self._estimated:
            self._estimate(trainer)

    def _estimate(self, trainer):
        done = trainer.batch + 1
        if self._clock is None:
            if done == min(self.warmup, trainer.num_batches - 1):
                self.sync()
                self._clock = self._last = self.clock()
            return
        self.sync()
        now = self.clock()
        self._times.append(now - self._last)
        self._last = now
        timed, seconds = len(self._times), now - self._clock
        enough = timed >= self.timed or (seconds >= self.budget and timed >= MIN_TIMED)
        if not enough and done < trainer.num_batches:
            return
        self._estimated = True
        epoch = statistics.median(self._times) * trainer.num_batches
        epochs = trainer.config.epochs - trainer.epoch + 1
        logger.info(
            "estimated time: %s per epoch, %s for %d epoch(s) before evaluation (from the "
            "median of %d timed batches of %d)",
            _duration(epoch),
            _duration(epoch * epochs),
            epochs,
            timed,
            trainer.num_batches,
        )

    def close(self):
        """Close the progress bar of an epoch that did not end."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, trainer):
        self.close()
        logger.info("%s", format_metrics(trainer.history[-1]))
        self._log_validation(trainer.history[-1])


def _wait_for_mxnet() -> None:
    from mxnet import nd

    nd.waitall()


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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
    if not getattr(config, "warmup_epochs", 0) and (epochs is None or epochs > 1):
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
