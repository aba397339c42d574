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
``trainer.time_batches()`` seconds of one batch's forward and backward pass, timed without
                          changing what the epochs train (before training)
"""

from .collapse_signs import CollapseCallback, collapse_advice, collapse_reason
from .epoch_log import MIN_TIMED, ProgressCallback, format_metrics
from .hooks import Callback, CallbackList
from .records import SELECTION, CheckpointCallback, MetricsCallback, best_record, selection_key

__all__ = [
    "Callback",
    "CallbackList",
    "CheckpointCallback",
    "CollapseCallback",
    "MIN_TIMED",
    "MetricsCallback",
    "ProgressCallback",
    "SELECTION",
    "best_record",
    "collapse_advice",
    "collapse_reason",
    "format_metrics",
    "selection_key",
]
