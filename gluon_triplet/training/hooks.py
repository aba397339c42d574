"""The callback hooks the training loop calls (the contract is in :mod:`.callbacks`)."""

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
