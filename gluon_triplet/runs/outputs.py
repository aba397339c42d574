"""What a run writes: the callbacks behind its outputs (progress, checkpoints,
metrics.json, the projector, the pictures), ``train.log``, and the closing summary."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, List

import numpy as np

from .. import __version__
from ..training.callbacks import Callback, MetricsCallback
from .report import class_name, done_line, evaluation_plan, summary_table
from .selection import validation_record

__all__ = [
    "baseline_callback",
    "context_names",
    "file_log",
    "output_callbacks",
    "plot_callbacks",
    "report",
    "run_plan",
    "write_metrics",
]

logger = logging.getLogger("gluon_triplet")


def run_plan(config, val_y, test_y):
    """:func:`~.report.evaluation_plan` of a run's splits."""
    val = 0 if val_y is None else len(val_y)
    test = 0 if test_y is None else len(test_y)
    return evaluation_plan(config.eval_every, config.eval_samples, val, test)


def context_names(contexts) -> str:
    return ", ".join(str(c) for c in contexts)


def baseline_callback(data, test_triplets, config, raw):
    """What computes the raw-pixel baseline into ``raw`` (beside the last epoch, or once
    training has ended)."""
    from .baseline import RawBaseline

    return RawBaseline(data.x_test, data.y_test, test_triplets, config.seed, config.margin, raw)


class _RunLog(logging.FileHandler):
    """``train.log``. A line that cannot be written (a full disk) is dropped silently:
    logging's default prints a traceback between the log lines, and the error that stops
    the run reports the disk."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextlib.contextmanager
def file_log(path: str) -> Iterator[None]:
    """Also log into ``path`` (appending: a resumed run continues its log)."""
    handler = _RunLog(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


class _EvaluationPool(Callback):
    """Stops the worker pool a streamed test split's evaluation passes share
    (:meth:`~gluon_triplet.data.streaming.LazyImages.one_pool`) when training begins (the
    batches timed before it) and when a training epoch begins, which start their own: an
    idle pool beside them would add its processes' memory to the run's peak. The next
    evaluation starts another; the last is stopped when training ends."""

    def __init__(self, test_x):
        self.test_x = test_x

    def on_train_begin(self, trainer):
        self.test_x.release_workers()

    def on_epoch_begin(self, trainer):
        self.test_x.release_workers()

    def on_train_end(self, trainer):
        self.test_x.release_workers()


def output_callbacks(
    run_dir, data, config, raw, contexts, kvstore, quiet, requested, val=None
) -> List[Any]:
    """What writes the run's outputs: progress, checkpoints, metrics.json, the projector,
    the pictures; and what watches the training for a collapse."""
    from ..training.callbacks import (
        CheckpointCallback,
        CollapseCallback,
        ProgressCallback,
    )
    from ..training.collapse import CollapseGuard
    from .board import BoardCallback

    rng = np.random.default_rng(config.seed)
    m = len(data.x_test) if config.projector_samples == -1 else config.projector_samples
    m = min(m, len(data.x_test))
    pick = np.sort(rng.choice(len(data.x_test), size=m, replace=False))
    # One copy of the projector sample for the projector and the pictures.
    sample_x, sample_y = (data.x_test[pick], data.y_test[pick]) if m else (None, None)
    callbacks = [
        ProgressCallback(bar=False if quiet else None),
        CollapseGuard(),
        CheckpointCallback(run_dir.path),
        CollapseCallback(),
    ]
    for x in (data.x_test, None if val is None else val["x"]):
        if hasattr(x, "release_workers"):
            callbacks.insert(0, _EvaluationPool(x))
    if m:
        callbacks.append(
            BoardCallback(
                run_dir.path,
                sample_x,
                sample_y,
                class_names=data.class_names,
                projector_every=config.projector_every,
                test_index=pick,
            )
        )
    if config.plots:
        plotted = (pick, sample_x, sample_y) if m >= 2 else (None, None, None)
        callbacks.extend(plot_callbacks(run_dir, data, plotted, raw, config))
    # Last: metrics.json says "finished" only once every other output is written, so a run
    # cut short before that can be resumed to finish them.
    callbacks.append(
        MetricsCallback(
            run_dir.metrics_path,
            extra={
                "version": __version__,
                "dataset": {
                    "name": data.name,
                    "requested": requested,
                    "source": data.source,
                    "train": len(data.y_train),
                    "test": len(data.y_test),
                    **validation_record(val, data),
                },
                "contexts": [str(c) for c in contexts],
                "workers": 1 if kvstore is None else kvstore.num_workers,
                "raw_pixels": raw,
                "evaluation": run_plan(config, None if val is None else val["y"], data.y_test),
            },
        )
    )
    return callbacks


def report(history, raw, data, config, run_dir, contexts, seconds) -> None:
    """The summary table (log) and the ``done:`` line (stdout)."""
    logger.info("%s", summary_table(history, raw, config.margin))
    per_class = history[-1]["test"].get("per_class_precision_at_1") or {}
    logger.debug(
        "per-class test P@1: %s",
        ", ".join(f"{class_name(data.class_names, k)} {v:.3f}" for k, v in per_class.items()),
    )
    from ..training.callbacks import best_record

    chosen = best_record(history, config.margin)
    if chosen.get("val"):
        logger.info(
            "best epoch: %d, chosen on validation MAP@R %.4f (model-best.params; the test "
            "split did not take part in the choice)",
            chosen["epoch"],
            chosen["val"]["map_at_r"],
        )
    summary = done_line(
        config.epochs,
        seconds,
        context_names(contexts),
        history[-1]["test"],
        raw,
        run_dir.path,
        chosen,
    )
    print(summary, flush=True)
    logger.debug(summary)


def write_metrics(callbacks, trainer) -> None:
    """Write metrics.json now, unfinished, through the run's MetricsCallback."""
    for cb in callbacks:
        if isinstance(cb, MetricsCallback):
            cb.write(trainer)


def plot_callbacks(run_dir, data, sample, raw, config):
    """The PNG pictures of a run (see :mod:`gluon_triplet.runs.plots`) as a list of 0 or 1
    callbacks; ``sample`` is ``(pick, x, y)``: the projector sample's positions in the test
    split and its samples and labels, or three None: curves only."""
    import importlib.util

    from .pictures import PlotCallback

    missing = [m for m in ("matplotlib", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        logger.warning(
            "no PNG pictures: %s not installed (pip install matplotlib scikit-learn)",
            " and ".join(missing),
        )
        return []
    pick, x, y = sample
    return [
        PlotCallback(
            run_dir.path,
            x,
            y,
            class_names=data.class_names,
            baseline=raw,
            seed=config.seed,
            test_index=pick,
        )
    ]
