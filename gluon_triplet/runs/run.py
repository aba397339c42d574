"""One training run from a :class:`~gluon_triplet.config.Config`: the wiring.

:func:`run` checks its input before anything is written, makes a fresh run directory (or
continues an interrupted one with ``resume``) and holds its lock, trains with the
callbacks that write the run's outputs, and turns SIGINT, SIGTERM, SIGHUP and SIGQUIT
into :class:`~gluon_triplet.signals.Interrupted`, whose message says how to resume. The modules
that import MXNet are imported inside the run, not here, so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from typing import Any, Dict, Optional

from ..config import Config
from ..errors import CollapseError, DiskFullError
from ..resources import DISK_FULL_ERRNOS, disk_full_error
from ..signals import Interrupted, interrupts
from .outputs import (
    baseline_callback,
    context_names,
    file_log,
    output_callbacks,
    report,
    run_plan,
    write_metrics,
)
from .preparation import (
    check_memory,
    make_triplets,
    prepare_data,
    resolve_model,
    resolve_run_epochs,
)
from .preparation import dense_widths as _dense_widths  # noqa: F401  (its former path)
from .preparation import resolve_model as _resolve_model  # noqa: F401  (its former path)
from .report import command
from .rundir import RunDir
from .selection import trainer_arguments

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
    logger.info("context: %s%s", context_names(contexts), gpu_note if config.ctx == "auto" else "")
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
    config, data, val, requested = prepare_data(config, data)
    train_set, test_triplets = make_triplets(data, config)
    shape = tuple(int(d) for d in data.x_train.shape[1:])
    config = resolve_model(config, shape)
    config = resolve_run_epochs(config, len(train_set.labels))
    check_memory(config, shape, len(train_set.classes), len(contexts))
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
    with run_dir.lock(), file_log(run_dir.log_path):
        progress.update(run_dir=run_dir, trainer=trainer)
        logger.info("run directory: %s", run_dir)
        _log_start(run_dir, trainer, config, resume, manifest)
        # A streamed test split is embedded in chunks: each evaluation pass decodes them
        # in one pool of workers, stopped when a training epoch starts its own.
        with shared_pool(data.x_test), shared_pool(val["x"] if val else None):
            raw: Dict[str, Any] = {}  # filled when training ends (see .baseline)
            callbacks = output_callbacks(
                run_dir, data, config, raw, contexts, kvstore, quiet, requested, val
            )
            callbacks.insert(0, baseline_callback(data, test_triplets, config, raw))
            trainer.callbacks = CallbackList(callbacks)
            progress["callbacks"] = callbacks
            history = _fit(trainer, callbacks, run_dir)
        report(history, raw, data, config, run_dir, contexts, time.perf_counter() - t0)
    return run_dir.path


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
    plan = run_plan(config, trainer.val_y, trainer.test_y)
    logger.info("evaluation: %s", "; ".join(f"{k}: {v}" for k, v in plan.items()))


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
            write_metrics(callbacks, trainer)  # with the collapse events
        saved = _checkpoint_epoch(callbacks)
        if isinstance(e, FloatingPointError):
            params = f"; its parameters are also {run_dir.file(RunDir.LAST_PARAMS)}"
            raise FloatingPointError(f"{e}; {_last_good(saved, run_dir, params)}") from e
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            # From an atomic writer (named already), or a library writing on its own.
            full = e if isinstance(e, DiskFullError) else None
            full = full or disk_full_error(e.filename or run_dir.path, e.strerror)
            error = DiskFullError(
                f"{full}; {_last_good(saved, run_dir)}; free some space, then continue with: "
                f"{command('--resume', str(run_dir))}"
            )
            error.errno = e.errno
            raise error from None
        raise


def _last_good(saved: Optional[int], run_dir: RunDir, note: str = "") -> str:
    """Where the last good checkpoint is (epoch ``saved``), or that there is none."""
    if saved is None:
        return "no epoch finished, so there is no checkpoint"
    return f"last good checkpoint: {run_dir.checkpoint_dir} (epoch {saved}{note})"


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
