"""The raw-pixel baseline of a run: the test metrics of the raw inputs, which a trained
net must beat (``metrics.json``'s ``raw_pixels``, the summary, ``curves.png``)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Tuple

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
    raw, note = _score(x, y, triplets, seed, margin)
    _log(raw, note)
    return raw


def _score(x, y, triplets, seed: int, margin: float) -> Tuple[Dict[str, Any], str]:
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
    return evaluate_embeddings(x, y, triplets=triplets, margin=margin, method=method), note


def _log(raw: Dict[str, Any], note: str) -> None:
    logger.info(
        "raw pixels%s: test triplet-acc %.4f P@1 %.4f MAP@R %.4f",
        note,
        raw["triplet_accuracy"],
        raw["precision_at_1"],
        raw["map_at_r"],
    )


class RawBaseline(Callback):
    """Fills ``metrics`` (a dict other callbacks hold) with :func:`raw_baseline`, logged
    when training ends; it must come before them in the callback list.

    In-memory inputs are scored in a thread beside the last epoch of a run of two or more
    (the training leaves part of the CPUs idle; epoch 1 times its batches for the
    estimate), and the thread is waited for when that epoch ends, before anything else
    runs that could change the BLAS's thread count (k-means, t-SNE) and so its float32
    rounding. Streamed inputs are decoded and scored when training ends.
    """

    def __init__(self, x, y, triplets, seed: int, margin: float, metrics: Dict[str, Any]):
        self.x, self.y, self.triplets = x, y, triplets
        self.seed, self.margin = seed, margin
        self.metrics = metrics
        self._thread: Optional[threading.Thread] = None
        self._outcome: Dict[str, Any] = {}

    def on_epoch_begin(self, trainer):
        last = trainer.epoch == trainer.config.epochs
        if self.metrics or self._thread or not last or trainer.epoch < 2:
            return
        if hasattr(self.x, "dataset"):  # streamed: its decoding pools belong to training
            return
        self._thread = threading.Thread(target=self._compute, name="raw-baseline", daemon=True)
        self._thread.start()

    def _compute(self):
        try:
            self._outcome["result"] = _score(self.x, self.y, self.triplets, self.seed, self.margin)
        except BaseException as e:  # raised again in the training's thread
            self._outcome["error"] = e

    def on_epoch_end(self, trainer):
        if self._thread is not None:
            self._thread.join()

    def on_train_end(self, trainer):
        if self.metrics:
            return
        if self._thread is None:
            self._compute()
        else:
            self._thread.join()
        if "error" in self._outcome:
            raise self._outcome.pop("error")
        raw, note = self._outcome.pop("result")
        _log(raw, note)
        self.metrics.update(raw)
