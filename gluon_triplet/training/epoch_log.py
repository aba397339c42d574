"""``ProgressCallback``: a log line per epoch, a progress bar, the epoch-time estimates."""

from __future__ import annotations

import logging
import statistics
import sys
import time
from typing import List, Optional

from .hooks import Callback

__all__ = ["MIN_TIMED", "PROBE_TIMED", "ProgressCallback", "format_metrics"]

logger = logging.getLogger("gluon_triplet")

#: Batches the trainer times before training (``time_batches``) for the first estimate.
PROBE_TIMED = 3

#: The fewest timed batches an epoch-time estimate rests on, unless the epoch is shorter.
MIN_TIMED = 3


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
    """A progress bar per epoch (only on a terminal), a log line per epoch, an estimate of
    the epoch's time and of the run's before training (from the trainer's
    ``time_batches``, when it has one), and a closer one early in the first epoch trained.

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
        self._last: Optional[float] = None  # when the last timed batch's work was done
        self._times: List[float] = []

    def on_train_begin(self, trainer):
        record = trainer.history[-1]
        note = " (before training)" if record["epoch"] == 0 else " (resumed from here)"
        if record.get("test") or record.get("train") or not record.get("val"):
            logger.info("%s", format_metrics(record) + note)
            note = ""
        self._log_validation(record, note)
        if trainer.epoch < trainer.config.epochs and hasattr(trainer, "time_batches"):
            _log_estimate(
                " before training",
                trainer.time_batches(timed=PROBE_TIMED),
                trainer.num_batches,
                trainer.config.epochs - trainer.epoch,
                f"from {PROBE_TIMED} timed forward and backward passes; the updates and any "
                "decoding come on top: a closer estimate follows early in the epoch",
            )

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
        if self._last is None:
            if done == min(self.warmup, trainer.num_batches - 1):
                self.sync()
                self._last = self.clock()
            return
        self.sync()
        now = self.clock()
        self._times.append(now - self._last)
        self._last = now
        timed, seconds = len(self._times), sum(self._times)
        enough = timed >= self.timed or (seconds >= self.budget and timed >= MIN_TIMED)
        if not enough and done < trainer.num_batches:
            return
        self._estimated = True
        _log_estimate(
            "",
            statistics.median(self._times),
            trainer.num_batches,
            trainer.config.epochs - trainer.epoch + 1,
            f"from the median of {timed} timed batches of {trainer.num_batches}",
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


def _log_estimate(when: str, per_batch: float, batches: int, epochs: int, source: str) -> None:
    """Log the time of an epoch of ``batches`` and of ``epochs`` epochs at ``per_batch``
    seconds a batch; ``source`` says where ``per_batch`` comes from."""
    epoch = per_batch * batches
    logger.info(
        "estimated time%s: %s per epoch, %s for %d epoch(s) before evaluation (%s)",
        when,
        _duration(epoch),
        _duration(epoch * epochs),
        epochs,
        source,
    )


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
