"""The raw-pixel baseline of a run: the test metrics of the raw inputs, which a trained
net must beat (``metrics.json``'s ``raw_pixels``, the summary, ``curves.png``)."""

from __future__ import annotations

import logging
from typing import Any, Dict

import numpy as np

from ..training.callbacks import Callback

__all__ = ["RawBaseline", "raw_baseline"]

logger = logging.getLogger("gluon_triplet")

#: Streamed test splits larger than this (as float32) are scored on a seeded subset.
_RAW_BASELINE_BYTES = 2**27


def raw_baseline(x, y, triplets, seed: int, margin: float) -> Dict[str, Any]:
    """The test metrics of the raw inputs ``x`` (flattened), logged as ``raw pixels``:
    exact float32 ranking, or the approximate search where evaluation uses it; a streamed
    split over :data:`_RAW_BASELINE_BYTES` is scored on a seeded subset, said in the log."""
    from ..data.triplets import create_pairs
    from ..evaluation.metrics import evaluate_embeddings
    from ..evaluation.neighbours import neighbour_method

    note = ""
    if hasattr(x, "dataset"):  # streamed pictures: decode the test split once, if it fits
        if x.nbytes > _RAW_BASELINE_BYTES:
            n = max(2, int(_RAW_BASELINE_BYTES // (x.nbytes // len(x))))
            pick = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
            y = y[pick]
            triplets = create_pairs(y, seed=seed, warn=False)
            note = f" (a random {n}-sample subset of the streamed test split)"
            x = x[pick]
        else:
            x = x[:]
    method = "float32" if neighbour_method(len(x)) == "numpy" else "auto"
    x = x.reshape(len(x), -1)
    raw = evaluate_embeddings(x, y, triplets=triplets, margin=margin, method=method)
    logger.info(
        "raw pixels%s: test triplet-acc %.4f P@1 %.4f MAP@R %.4f",
        note,
        raw["triplet_accuracy"],
        raw["precision_at_1"],
        raw["map_at_r"],
    )
    return raw


class RawBaseline(Callback):
    """Fills ``metrics`` (a dict other callbacks hold) with :func:`raw_baseline` when
    training ends; it must come before them in the callback list."""

    def __init__(self, x, y, triplets, seed: int, margin: float, metrics: Dict[str, Any]):
        self.x, self.y, self.triplets = x, y, triplets
        self.seed, self.margin = seed, margin
        self.metrics = metrics

    def on_train_end(self, trainer):
        if not self.metrics:
            self.metrics.update(raw_baseline(self.x, self.y, self.triplets, self.seed, self.margin))
