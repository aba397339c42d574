"""Callbacks: the collapse warning, from real test metrics of known embeddings."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from gluon_triplet.data.triplets import create_pairs
from gluon_triplet.evaluation.metrics import evaluate_embeddings
from gluon_triplet.training.callbacks import CollapseCallback, collapse_reason

LABELS = np.repeat(np.arange(5), 20)
TRIPLETS = create_pairs(LABELS, seed=0)


def metrics_of(emb, margin):
    return evaluate_embeddings(emb, LABELS, triplets=TRIPLETS, margin=margin)


def clusters(scale=1.0, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(5, 8)) * scale
    return (centers[LABELS] + noise * rng.normal(size=(len(LABELS), 8))).astype(np.float32)


@pytest.mark.parametrize(
    "emb, margin, phrase",
    [
        (np.tile(np.float32([0.3, -0.2, 0.5, 0, 0, 0.1, 0, 1]), (100, 1)), 0.2, "same point"),
        (np.zeros((100, 8), np.float32), 1.0, "same point"),  # a dead ReLU output
        (clusters(scale=0, noise=0.05), 1.0, "violate the margin"),  # spread << margin
        (clusters(), 0.2, None),  # separated classes
        (clusters(scale=0, noise=1.0), 0.2, None),  # useless, but not collapsed
    ],
    ids=["all-equal", "all-zero", "within-margin", "separated", "random"],
)
def test_collapse_reason(emb, margin, phrase):
    reason = collapse_reason(metrics_of(emb, margin), margin)
    if phrase is None:
        assert reason is None
    else:
        assert phrase in reason


@pytest.fixture
def warnings_log():
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    log = logging.getLogger("gluon_triplet")
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def test_collapse_callback_warns_at_first_collapse_and_at_the_end(warnings_log):
    collapsed = metrics_of(np.zeros((100, 8), np.float32), 0.2)
    healthy = metrics_of(clusters(), 0.2)
    trainer = SimpleNamespace(config=SimpleNamespace(margin=0.2), history=[])
    cb = CollapseCallback()
    for epoch, test in enumerate([collapsed, healthy, collapsed, collapsed, collapsed]):
        trainer.history.append({"epoch": epoch, "train": {}, "test": test})
        if epoch:
            cb.on_epoch_end(trainer)
    cb.on_train_end(trainer)
    messages = [r.getMessage() for r in warnings_log]
    # Epoch 0 (the untrained net) never counts; epoch 2 is the first; 4 is the end.
    assert [m.split(":")[0] for m in messages] == ["epoch 2", "epoch 4"]
    assert "the embedding collapsed: every test embedding" in messages[0]
    assert "still collapsed at the end" in messages[1]
    assert all("try a lower --lr" in m for m in messages)


def test_collapse_callback_reads_the_validation_split_of_epochs_without_test(warnings_log):
    # By default only the last epoch scores the test split: the epochs before it are
    # watched on their validation metrics.
    collapsed = metrics_of(np.zeros((100, 8), np.float32), 0.2)
    healthy = metrics_of(clusters(), 0.2)
    trainer = SimpleNamespace(config=SimpleNamespace(margin=0.2), history=[])
    cb = CollapseCallback()
    for epoch, val in enumerate([healthy, healthy, collapsed, healthy]):
        test = healthy if epoch == 3 else {}
        trainer.history.append({"epoch": epoch, "train": {}, "test": test, "val": val})
        if epoch:
            cb.on_epoch_end(trainer)
    cb.on_train_end(trainer)
    messages = [r.getMessage() for r in warnings_log]
    assert [m.split(":")[0] for m in messages] == ["epoch 2"]
    assert "every validation embedding is nearly the same point" in messages[0]


def test_collapse_callback_silent_when_healthy(warnings_log):
    trainer = SimpleNamespace(config=SimpleNamespace(margin=0.2), history=[])
    cb = CollapseCallback()
    for epoch in range(3):
        trainer.history.append({"epoch": epoch, "train": {}, "test": metrics_of(clusters(), 0.2)})
        cb.on_epoch_end(trainer)
    cb.on_train_end(trainer)
    assert warnings_log == []


class _Batches:
    """A trainer stand-in that runs through its batches, and a clock and a sync for a
    ProgressCallback: the clock reads ``per_batch`` seconds per batch done."""

    def __init__(self, per_batch=0.5):
        import types

        self.per_batch, self.syncs = per_batch, []
        self.trainer = types.SimpleNamespace(
            num_batches=0,
            epoch=1,
            batch=0,
            running_loss=0.1,
            config=types.SimpleNamespace(epochs=10, log_every=50),
        )

    def clock(self):
        return (self.trainer.batch + 1) * self.per_batch

    def sync(self):
        self.syncs.append(self.trainer.batch + 1)

    def run(self, callback, num_batches, epochs=10, epoch=1):
        self.trainer.num_batches, self.trainer.epoch = num_batches, epoch
        self.trainer.config.epochs = epochs
        for b in range(num_batches):
            self.trainer.batch = b
            callback.on_batch_end(self.trainer)


def test_progress_estimates_the_epoch_and_the_run_from_timed_batches(caplog):
    from gluon_triplet.training.callbacks import ProgressCallback

    fake = _Batches(per_batch=0.5)
    callback = ProgressCallback(bar=False, warmup=2, timed=4, clock=fake.clock, sync=fake.sync)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        fake.run(callback, num_batches=100, epochs=10, epoch=3)
    lines = [r.getMessage() for r in caplog.records if "estimated time" in r.getMessage()]
    # batches 3-6 timed (under the 2 s it may take): 0.5 s each, 50 s an epoch, 8 epochs
    # left (3 to 10); the queued work is waited for when the clock starts and at each
    # batch it times
    assert lines == [
        "estimated time: 50 s per epoch, 6.7 min for 8 epoch(s) before evaluation "
        "(from the median of 4 timed batches of 100)"
    ]
    assert fake.syncs == [2, 3, 4, 5, 6]
    slow = _Batches(per_batch=1.5)  # the 2 s budget ends it, but not before 3 batches
    callback = ProgressCallback(bar=False, warmup=2, timed=4, clock=slow.clock, sync=slow.sync)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        slow.run(callback, num_batches=100, epochs=1)
    assert "2.5 min per epoch" in caplog.text and "median of 3 timed batches" in caplog.text
    quick = _Batches(per_batch=0.02)
    callback = ProgressCallback(bar=False, warmup=2, timed=4, clock=quick.clock, sync=quick.sync)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        quick.run(callback, num_batches=23, epochs=10)
    assert "0.5 s per epoch, 4.6 s for 10 epoch(s)" in caplog.text


def test_progress_estimate_is_said_once_and_never_on_one_batch_epochs(caplog):
    from gluon_triplet.training.callbacks import ProgressCallback

    fake = _Batches()
    callback = ProgressCallback(bar=False, warmup=2, timed=1, clock=fake.clock, sync=fake.sync)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        fake.run(callback, num_batches=1)
        fake.run(callback, num_batches=2)  # the clock starts after batch 1, ends at 2
        fake.run(callback, num_batches=50)
    lines = [r for r in caplog.records if "estimated time" in r.getMessage()]
    assert len(lines) == 1 and "median of 1 timed batches of 2" in lines[0].getMessage()


def test_progress_estimate_is_not_set_by_one_stalled_batch(caplog):
    from gluon_triplet.training.callbacks import ProgressCallback

    fake = _Batches(per_batch=0.5)
    stall = {3: 9.0}  # batch 3 (the first timed one) waits 9 s behind another job

    def clock():
        b = fake.trainer.batch + 1
        return b * 0.5 + sum(s for at, s in stall.items() if at <= b)

    callback = ProgressCallback(bar=False, warmup=2, timed=20, clock=clock, sync=fake.sync)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        fake.run(callback, num_batches=100, epochs=1)
    # The budget is spent after one batch, but the estimate waits for 3 and takes their
    # median: 0.5 s a batch, 50 s an epoch (the mean would say 3.5 s a batch).
    assert "estimated time: 50 s per epoch" in caplog.text
    assert "median of 3 timed batches of 100" in caplog.text
