"""One training run from a :class:`~gluon_triplet.config.Config`: the wiring.

:func:`run` checks its input before anything is written, makes a fresh run directory (or
continues an interrupted one with ``resume``) and holds its lock, trains with the
callbacks that write the run's outputs, and turns SIGINT, SIGTERM, SIGHUP and SIGQUIT
into :class:`~gluon_triplet.signals.Interrupted`, whose message says how to resume. The modules
that import MXNet are imported inside the run, not here, so ``--help`` stays instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from .. import __version__
from ..config import Config
from ..errors import CollapseError, ConfigError, DiskFullError
from ..resources import DISK_FULL_ERRNOS, disk_full_error
from ..signals import Interrupted, interrupts
from ..training.callbacks import Callback, MetricsCallback
from .report import class_name, command, done_line, evaluation_plan, shape_text, summary_table
from .rundir import RunDir
from .selection import trainer_arguments, validation_record, validation_split

__all__ = ["Interrupted", "run"]

logger = logging.getLogger("gluon_triplet")


def run(
    config: Config,
    quiet: bool = False,
    resume: Optional[str] = None,
    accept_changed_data: bool = False,
) -> Optional[str]:
    """Train one run from a Config; returns the run directory (None on a worker of rank > 0).

    Parameters
    ----------
    config : Config
    quiet : bool
        No progress bar.
    resume : str, optional
        The directory of an interrupted run, continued from its checkpoint (``config`` must
        be the run's own ``config.json``).
    accept_changed_data : bool
        With ``resume``: continue even if the data changed since the run started (by
        default a DataError says what changed; see :mod:`~gluon_triplet.runs.datacheck`).

    Raises
    ------
    Interrupted
        SIGINT, SIGTERM, SIGHUP or SIGQUIT; the message tells how to resume.
    DiskFullError
        A write failed for want of space; the message names the file, the space left and
        the last good checkpoint.
    RunDirInUse
        Another process trains in ``resume``.
    """
    progress: Dict[str, Any] = {}
    with interrupts():
        try:
            return _run(config, quiet, resume, progress, accept_changed_data)
        except Interrupted as e:
            e.args = (_interrupt_message(e.signum, config, progress),)
            raise


def _run(config, quiet, resume, progress, accept_changed_data=False):
    from ..data.datasets import load_dataset
    from ..data.decoding import ImageOptions
    from ..data.streaming import shared_pool
    from ..nets.zoo import model_from_config
    from ..training.batching import check_batch_fits
    from ..training.callbacks import CallbackList
    from ..training.trainer import TripletTrainer, create_kvstore, resolve_contexts, set_seed
    from .checkpoint import load_checkpoint
    from .datacheck import check_resumed_data

    t0 = time.perf_counter()
    contexts = resolve_contexts(config.ctx)
    gpu_note = "" if contexts[0].device_type == "gpu" else " (no GPU visible to MXNet)"
    logger.info("context: %s%s", _names(contexts), gpu_note if config.ctx == "auto" else "")
    set_seed(config.seed)

    # Everything that can fail on bad input happens before the run directory exists.
    manifest = None
    if resume:
        run_dir = RunDir.open(os.path.normpath(resume))
        run_dir.check_free()
        manifest = run_dir.check_resumable(config)
        check_resumed_data(run_dir, config, accept_changed_data, restart=manifest is None)
    else:
        RunDir.check_new(config.logdir, config.run_name)
    data = load_dataset(
        config.dataset,
        config.data_dir,
        logger=logger,
        images=ImageOptions.from_config(config),
        max_bytes=config.max_data_bytes,
    )
    config, data, val, requested = _prepare_data(config, data)
    train_set, test_triplets = _triplets(data, config)
    shape = tuple(int(d) for d in data.x_train.shape[1:])
    config = _resolve_model(config, shape)
    config = _resolve_epochs(config, len(train_set.labels))
    _check_memory(config, shape, len(train_set.classes), len(contexts))
    net, _ = model_from_config(config, shape, ctx=contexts)
    check_batch_fits(config, train_set)
    kvstore = create_kvstore(config.kvstore)  # None unless distributed; waits for the job
    if kvstore is not None:
        logger.info("kvstore %s: worker %d of %d", kvstore.type, kvstore.rank, kvstore.num_workers)
        if kvstore.rank != 0:
            return _run_worker(net, train_set, config, contexts, kvstore, t0)
    # Built before the run dir exists: it validates the P x K sampler and the miner.
    trainer = TripletTrainer(
        net,
        train_set,
        config,
        contexts,
        test_x=data.x_test,
        test_y=data.y_test,
        test_triplets=test_triplets,
        kvstore=kvstore,
        class_names=data.class_names,
        **trainer_arguments(val, config),
    )
    if manifest is not None:
        load_checkpoint(trainer, run_dir.checkpoint_dir, manifest)
    if not resume:
        run_dir = _new_run_dir(config, data.name)
    with run_dir.lock(), _file_log(run_dir.log_path):
        progress.update(run_dir=run_dir, trainer=trainer)
        logger.info("run directory: %s", run_dir)
        _log_start(run_dir, trainer, config, resume, manifest)
        # A streamed test split is embedded in chunks: each evaluation pass decodes them
        # in one pool of workers, stopped when a training epoch starts its own.
        with shared_pool(data.x_test), shared_pool(val["x"] if val else None):
            raw: Dict[str, Any] = {}  # filled when training ends (see .baseline)
            callbacks = _callbacks(
                run_dir, data, config, raw, contexts, kvstore, quiet, requested, val
            )
            callbacks.insert(0, _baseline_callback(data, test_triplets, config, raw))
            trainer.callbacks = CallbackList(callbacks)
            progress["callbacks"] = callbacks
            history = _fit(trainer, callbacks, run_dir)
        _report(history, raw, data, config, run_dir, contexts, time.perf_counter() - t0)
    return run_dir.path


def _prepare_data(config, data):
    """``(config, data, val, requested)``: the config with what the data resolved, the
    data without its validation split (``val``, see :mod:`.selection`), and the dataset
    the user asked for."""
    config = _record_image_shape(config, data)
    data, val = validation_split(data, config)
    requested = config.dataset
    if data.name != config.dataset:
        # The offline fallback (mnist -> mnist-5k): the run records what it trained on, so
        # that --resume, embed and evaluate read the same data and never download.
        config = dataclasses.replace(config, dataset=data.name)
    return config, data, val, requested


def _new_run_dir(config, dataset: str) -> RunDir:
    """A new run directory holding the run's ``config.json`` and its data record."""
    from .datacheck import record_data

    run_dir = RunDir.create(config.logdir, config.run_name, dataset)
    try:
        with run_dir.lock():
            config.save(run_dir.config_path)
            record_data(run_dir, config)
    except BaseException:
        # A run dir without its config (a full disk) is useless, and it is new.
        shutil.rmtree(run_dir.path, ignore_errors=True)
        raise
    return run_dir


def _log_start(run_dir, trainer, config, resume, manifest) -> None:
    """Where a resumed run continues from, the model files its checkpoint restored, the
    config and the epoch's triplets."""
    from .checkpoint import restore_outputs

    if resume:
        logger.info(
            "resuming after epoch %d of %d (%s)",
            trainer.epoch,
            config.epochs,
            "from its checkpoint" if manifest else "no epoch had finished: from the start",
        )
    if manifest is not None:
        # The part before may have stopped between the checkpoint and the model files.
        for path in restore_outputs(run_dir.checkpoint_dir, run_dir.path, manifest):
            logger.info("restored %s from the checkpoint of epoch %d", path, trainer.epoch)
    logger.debug("config: %s", json.dumps(config.to_dict(), sort_keys=True))
    train_set = trainer.train_set
    logger.info(
        "triplets per epoch: %d (class-balanced over %d classes)",
        len(train_set),
        len(train_set.classes),
    )
    if config.augment != "none":
        logger.info("augment: %s (training batches only, in the step's graph)", config.augment)
    plan = _plan(config, trainer.val_y, trainer.test_y)
    logger.info("evaluation: %s", "; ".join(f"{k}: {v}" for k, v in plan.items()))


def _plan(config, val_y, test_y):
    """:func:`~.report.evaluation_plan` of a run's splits."""
    val = 0 if val_y is None else len(val_y)
    test = 0 if test_y is None else len(test_y)
    return evaluation_plan(config.eval_every, config.eval_samples, val, test)


def _check_memory(config, sample_shape, num_classes: int, num_contexts: int = 1) -> None:
    """Refuse, before anything is allocated, a net or a batch that cannot fit in memory.

    A lower bound, in float32 bytes: the parameters of the net's Dense layers (the first
    one fed by the flattened sample; a CNN's by its last feature map, or one value per
    channel when it pools globally: :func:`_dense_widths`), times 2 + the optimizer's
    state arrays (gradients; Adam's 2 moments, SGD's momentum), per context;
    a batch's inputs and activations, forward and backward; and for the online miners the
    batch's pairwise distance matrix.
    """
    from ..resources import available_memory, format_bytes

    available = available_memory()
    if available is None:
        return
    features, widths = _dense_widths(config, sample_shape)
    params = sum(a * b + b for a, b in zip([features, *widths[:-1]], widths))
    states = 2 if config.optimizer == "adam" else (1 if config.momentum else 0)
    model_bytes = params * 4 * (2 + states) * num_contexts
    if config.miner == "offline":
        batch, what = 3 * config.batch_size, f"--batch-size {config.batch_size}"
    else:
        p = config.pk_classes or min(10, num_classes)
        batch, what = p * config.pk_samples, f"-P {p} x -K {config.pk_samples}"
    batch_bytes = batch * (features + sum(widths)) * 4 * 2
    pairwise = 0 if config.miner == "offline" else batch * batch * 4
    total = model_bytes + batch_bytes + pairwise
    if total <= available:
        return
    if model_bytes >= batch_bytes + pairwise:
        flags = "--hidden / --embedding-size"
        reason = (
            f"its {params} parameters need {format_bytes(model_bytes)} with their gradients "
            "and optimizer state"
        )
    else:
        flags = "-K/--pk-samples, -P/--pk-classes" if pairwise else "--batch-size"
        reason = f"a batch of {batch} samples ({what}) needs {format_bytes(batch_bytes + pairwise)}"
        if pairwise:
            reason += f", {format_bytes(pairwise)} of it for its {batch} x {batch} distances"
    raise ConfigError(
        f"this run needs at least {format_bytes(total)} of memory: {reason}; only "
        f"{format_bytes(available)} is available; use a smaller {flags}"
    )


def _dense_widths(config, sample_shape):
    """The net's Dense layers as ``(features, [width, ...])``: the width of what the first
    one is fed, then each layer's output width, for a config whose model is resolved
    (:func:`_resolve_model`): a CNN's from its recorded architecture."""
    shape = tuple(int(d) for d in sample_shape)
    features = math.prod(shape)
    architecture = config.architecture
    if architecture:
        channels = architecture["channels"]
        if architecture.get("pool") == "avg":
            features = channels[-1]  # global average pooling: one value per channel
        else:
            h, w = shape[-2:]
            for _ in channels:  # each block halves the map, rounding up
                h, w = -(-h // 2), -(-w // 2)
            features = channels[-1] * h * w
    elif config.model != "mlp":
        features = 1  # a backbone's features: unknown here, and no bound needed for it
    hidden = (
        tuple(config.hidden)
        if config.hidden is not None
        else ((256,) if config.model == "mlp" else ())
    )
    return features, [*hidden, config.embedding_size]


def _resolve_epochs(config, samples):
    """``epochs`` left automatic, resolved for ``samples`` training samples, logged and put
    in the config the run records (``--resume`` continues to the same count)."""
    from ..config import AUTO_MIN_SAMPLES, resolve_epochs

    if config.epochs is not None:
        return config
    epochs = resolve_epochs(None, samples)
    logger.info(
        "epochs: %d (auto: %s training samples; at least %s samples seen, at least 10 and at "
        "most 30 epochs)",
        epochs,
        f"{samples:,}",
        f"{AUTO_MIN_SAMPLES:,}",
    )
    return dataclasses.replace(config, epochs=epochs)


def _resolve_model(config, shape):
    """``model`` (``auto`` too) and a CNN's architecture resolved once for samples of
    ``shape``, logged, and put in the config the run records, so that the run dir rebuilds
    this net whatever the defaults become."""
    from ..nets.zoo import resolve_architecture

    name, architecture = resolve_architecture(config, shape)
    if name != config.model or architecture:
        shown = name
        if architecture:
            widths = " ".join(str(c) for c in architecture["channels"])
            shown += f", {architecture['block']} blocks {widths}"
            if architecture.get("batch_norm"):
                shown += f", BatchNorm from convolution {architecture.get('batch_norm_from', 1)}"
            if architecture.get("pool_first"):
                shown += ", pooling first"
        logger.info(
            "model: %s (%s%s data)", shown, "auto: " * (config.model == "auto"), shape_text(shape)
        )
    return dataclasses.replace(config, model=name, input_shape=shape, architecture=architecture)


def _names(contexts) -> str:
    return ", ".join(str(c) for c in contexts)


def _record_image_shape(config, data):
    """Pictures decoded to a size and channel count chosen from the data: record them, so
    ``embed`` and ``evaluate`` decode other pictures the same way."""
    if not data.name.startswith(("folder:", "rec:", "image:")):
        return config
    shape = data.x_train.shape[1:]
    channels = 1 if len(shape) == 2 else int(shape[0])
    size = f"{shape[-2]}x{shape[-1]}"
    return dataclasses.replace(config, image_size=size, image_channels=channels)


def _triplets(data, config):
    """The training set of per-epoch triplets and the fixed test triples, each split's
    errors naming the dataset and the split."""
    from ..data.triplets import TripletDataset, create_pairs

    try:
        split = "training"
        train_set = TripletDataset(
            data.x_train,
            data.y_train,
            seed=config.seed,
            triplets_per_class=config.triplets_per_class,
        )
        split = "test"
        test_triplets = create_pairs(data.y_test, seed=config.seed, warn=False)
    except ValueError as e:
        raise ValueError(f"{data.name} {split} set: {e}") from None
    return train_set, test_triplets


def _baseline_callback(data, test_triplets, config, raw):
    """What computes the raw-pixel baseline into ``raw`` once training has ended."""
    from .baseline import RawBaseline

    return RawBaseline(data.x_test, data.y_test, test_triplets, config.seed, config.margin, raw)


class _RunLog(logging.FileHandler):
    """``train.log``. A line that cannot be written (a full disk) is dropped silently:
    logging's default prints a traceback between the log lines, and the error that stops
    the run reports the disk."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextlib.contextmanager
def _file_log(path: str) -> Iterator[None]:
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
    (:meth:`~gluon_triplet.data.streaming.LazyImages.one_pool`) when a training epoch begins,
    which starts its own: an idle pool beside it would add its processes' memory to the
    run's peak. The next evaluation starts another; the last is stopped when training ends."""

    def __init__(self, test_x):
        self.test_x = test_x

    def on_epoch_begin(self, trainer):
        self.test_x.release_workers()

    def on_train_end(self, trainer):
        self.test_x.release_workers()


def _callbacks(
    run_dir, data, config, raw, contexts, kvstore, quiet, requested, val=None
) -> List[Any]:
    """What writes the run's outputs: progress, checkpoints, metrics.json, the projector,
    the pictures; and what watches the training for a collapse."""
    from ..training.callbacks import (
        CheckpointCallback,
        CollapseCallback,
        MetricsCallback,
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
        callbacks.extend(_plot_callbacks(run_dir, data, plotted, raw, config))
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
                "evaluation": _plan(config, None if val is None else val["y"], data.y_test),
            },
        )
    )
    return callbacks


def _report(history, raw, data, config, run_dir, contexts, seconds) -> None:
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
        config.epochs, seconds, _names(contexts), history[-1]["test"], raw, run_dir.path, chosen
    )
    print(summary, flush=True)
    logger.debug(summary)


def _interrupt_message(signum: int, config: Config, progress: Dict[str, Any]) -> str:
    name = signal.Signals(signum).name
    run_dir = progress.get("run_dir")
    if run_dir is None:
        return f"interrupted by {name} before the run directory was made; nothing was written"
    trainer = progress["trainer"]
    saved = _checkpoint_epoch(progress.get("callbacks", ()))
    if saved is None and trainer.epoch and trainer.history[-1]["epoch"] == trainer.epoch:
        saved = trainer.epoch  # resumed, interrupted before its first new epoch ended
    if saved is None:
        where = "before any epoch finished, so there is no checkpoint"
    elif saved == trainer.epoch:
        where = (
            f"after epoch {saved} of {config.epochs}; its checkpoint is in {run_dir.checkpoint_dir}"
        )
    else:
        where = (
            f"in epoch {trainer.epoch} of {config.epochs}; the checkpoint of epoch {saved} is in "
            f"{run_dir.checkpoint_dir} (the partial epoch is dropped)"
        )
    resume = command("--resume", str(run_dir))
    return f"interrupted by {name} {where}; continue with: {resume}"


def _checkpoint_epoch(callbacks) -> Optional[int]:
    """The epoch of the last checkpoint the callbacks wrote, None before the first."""
    return next((cb.checkpoint_epoch for cb in callbacks if hasattr(cb, "checkpoint_epoch")), None)


def _fit(trainer, callbacks, run_dir):
    """``trainer.fit()``; on divergence or an interrupt, flush and close what the callbacks
    hold open (mxboard's event file) and name the last good checkpoint."""
    try:
        return trainer.fit()
    except BaseException as e:
        for cb in callbacks:
            close = getattr(cb, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as close_error:  # the original error matters more
                    logger.debug("closing %s failed: %s", type(cb).__name__, close_error)
        if isinstance(e, CollapseError):
            _write_metrics(callbacks, trainer)  # with the collapse events
        if isinstance(e, FloatingPointError):
            saved = _checkpoint_epoch(callbacks)
            if saved is None:
                where = "no epoch finished, so there is no checkpoint"
            else:
                where = (
                    f"last good checkpoint: {run_dir.checkpoint_dir} (epoch {saved}; "
                    f"its parameters are also {run_dir.file(RunDir.LAST_PARAMS)})"
                )
            raise FloatingPointError(f"{e}; {where}") from e
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            # From an atomic writer (named already), or a library writing on its own.
            full = e if isinstance(e, DiskFullError) else None
            full = full or disk_full_error(e.filename or run_dir.path, e.strerror)
            saved = _checkpoint_epoch(callbacks)
            if saved is None:
                where = "no epoch finished, so there is no checkpoint"
            else:
                where = f"last good checkpoint: {run_dir.checkpoint_dir} (epoch {saved})"
            error = DiskFullError(
                f"{full}; {where}; free some space, then continue with: "
                f"{command('--resume', str(run_dir))}"
            )
            error.errno = e.errno
            raise error from None
        raise


def _write_metrics(callbacks, trainer) -> None:
    """Write metrics.json now, unfinished, through the run's MetricsCallback."""
    for cb in callbacks:
        if isinstance(cb, MetricsCallback):
            cb.write(trainer)


def _run_worker(net, train_set, config, contexts, kvstore, t0):
    """Rank > 0 of a distributed run: train its share; rank 0 evaluates and writes the run."""
    from ..training.callbacks import ProgressCallback
    from ..training.trainer import TripletTrainer

    trainer = TripletTrainer(
        net, train_set, config, contexts, callbacks=[ProgressCallback(bar=False)], kvstore=kvstore
    )
    trainer.fit()
    print(
        f"done: worker {kvstore.rank} of {kvstore.num_workers}, {config.epochs} epochs in "
        f"{time.perf_counter() - t0:.1f}s (rank 0 writes the run directory)",
        flush=True,
    )
    return None


def _plot_callbacks(run_dir, data, sample, raw, config):
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
