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


def test_collapse_callback_silent_when_healthy(warnings_log):
    trainer = SimpleNamespace(config=SimpleNamespace(margin=0.2), history=[])
    cb = CollapseCallback()
    for epoch in range(3):
        trainer.history.append({"epoch": epoch, "train": {}, "test": metrics_of(clusters(), 0.2)})
        cb.on_epoch_end(trainer)
    cb.on_train_end(trainer)
    assert warnings_log == []
