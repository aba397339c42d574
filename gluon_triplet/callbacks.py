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

__all__ = ["Callback", "CallbackList"]


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
