"""The raw-pixel baseline callback: the same figures whether it is scored beside the last
epoch or when training ends, and its errors are the training thread's."""

import logging
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from gluon_triplet.data.triplets import create_pairs
from gluon_triplet.runs.baseline import RawBaseline, raw_baseline


def data(n=300, d=50, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.normal(size=(n, d)) + 2 * y[:, None]).astype(np.float32).reshape(n, 5, 10)
    return x, y, create_pairs(y, seed=seed, warn=False)


def drive(callback, epochs):
    """The hooks a trainer calls over ``epochs`` epochs; the threads alive at each epoch's
    end, after the callback's own on_epoch_end."""
    alive = []
    trainer = SimpleNamespace(epoch=0, config=SimpleNamespace(epochs=epochs))
    callback.on_train_begin(trainer)
    for epoch in range(1, epochs + 1):
        trainer.epoch = epoch
        callback.on_epoch_begin(trainer)
        callback.on_epoch_end(trainer)
        alive.append([t.name for t in threading.enumerate() if t.name == "raw-baseline"])
    callback.on_train_end(trainer)
    return alive


@pytest.mark.parametrize("epochs", [1, 3])
def test_scored_beside_the_last_epoch_or_at_the_end_alike(epochs, caplog):
    caplog.set_level(logging.INFO, logger="gluon_triplet")
    x, y, triplets = data()
    expected = raw_baseline(x, y, triplets, seed=0, margin=0.2)
    metrics = {}
    callback = RawBaseline(x, y, triplets, seed=0, margin=0.2, metrics=metrics)
    started = []
    original = threading.Thread.start

    def start(thread):
        if thread.name == "raw-baseline":  # evaluation starts thread pools of its own
            started.append(thread.name)
        original(thread)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(threading.Thread, "start", start)
        alive = drive(callback, epochs)
    assert started == (["raw-baseline"] if epochs >= 2 else [])
    assert all(not names for names in alive)  # waited for before the epoch's end is over
    assert metrics == expected  # the same floats, not just close
    assert caplog.text.count("raw pixels: test") == 2  # the direct call's and the callback's


def test_an_error_in_the_thread_is_raised_when_training_ends():
    x, y, triplets = data()
    callback = RawBaseline(x, y[:-1], triplets, seed=0, margin=0.2, metrics={})
    with pytest.raises(ValueError):
        drive(callback, 2)
