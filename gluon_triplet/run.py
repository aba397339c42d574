"""One training run from a :class:`~gluon_triplet.config.Config`.

:func:`run` checks its input before anything is written, makes a fresh run directory (or
continues an interrupted one with ``resume``), trains with the callbacks that write the
run's outputs, and turns SIGINT / SIGTERM into :class:`Interrupted`, whose message says how
to resume. The modules that import MXNet are imported inside the run, not here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import signal
import threading
import time

import numpy as np

from . import __version__
from .config import ConfigError

__all__ = [
    "Interrupted",
    "make_run_dir",
    "run",
    "summary_table",
]

logger = logging.getLogger("gluon_triplet")


def _shape_text(shape):
    return " x ".join(str(int(s)) for s in shape)


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "data"


def make_run_dir(config, dataset_name):
    """Create a fresh run directory; never reuse or overwrite one."""
    logdir = config.logdir
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create logs dir {logdir!r}: {e.strerror}") from None
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise OSError(f"logs dir {logdir!r} is not writable")
    if config.run_name:
        path = os.path.join(logdir, config.run_name)
        if os.path.exists(path):
            raise FileExistsError(
                f"run directory {path!r} already exists; choose another --run-name"
            )
        os.makedirs(path)
        return path
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(logdir, f"{stamp}-{_slug(dataset_name)}")
    for i in range(1, 1000):
        path = base if i == 1 else f"{base}-{i}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free run directory name like {base!r}")


# ------------------------------------------------- reliability: checks, signals


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during :func:`run`; ``signum`` says which."""

    def __init__(self, signum, message=None):
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _interrupts():
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (a second signal gets the
    previous handler, so a hung clean-up can still be killed)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def handler(signum, frame):
        for s, h in previous.items():
            signal.signal(s, h)
        raise Interrupted(signum)

    for s in signums:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _interrupt_message(signum, config, progress):
    name = signal.Signals(signum).name
    run_dir = progress.get("run_dir")
    if run_dir is None:
        return f"interrupted by {name} before the run directory was made; nothing was written"
    trainer = progress["trainer"]
    saved = next(
        (
            cb.checkpoint_epoch
            for cb in progress.get("callbacks", ())
            if hasattr(cb, "checkpoint_epoch")
        ),
        None,
    )
    if saved is None and trainer.epoch and trainer.history[-1]["epoch"] == trainer.epoch:
        saved = trainer.epoch  # resumed, interrupted before its first new epoch ended
    if saved is None:
        where = "before any epoch finished, so there is no checkpoint"
    elif saved == trainer.epoch:
        where = f"after epoch {saved} of {config.epochs}; its checkpoint is in " + os.path.join(
            run_dir, "checkpoint"
        )
    else:
        where = (
            f"in epoch {trainer.epoch} of {config.epochs}; the checkpoint of epoch {saved} is in "
            f"{os.path.join(run_dir, 'checkpoint')} (the partial epoch is dropped)"
        )
    return f"interrupted by {name} {where}; continue with: gluon-triplet --resume {run_dir}"


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
        if isinstance(e, FloatingPointError):
            saved = next(
                (cb.checkpoint_epoch for cb in callbacks if hasattr(cb, "checkpoint_epoch")), None
            )
            if saved is None:
                where = "no epoch finished, so there is no checkpoint"
            else:
                where = (
                    f"last good checkpoint: {os.path.join(run_dir, 'checkpoint')} (epoch {saved}; "
                    f"its parameters are also {os.path.join(run_dir, 'model-last.params')})"
                )
            raise FloatingPointError(f"{e}; {where}") from e
        raise


def _check_output_dir(config):
    """Fail before any work if the run directory could not be made (see make_run_dir)."""
    logdir = config.logdir
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise NotADirectoryError(f"logs dir {logdir!r} exists and is not a directory")
    existing = os.path.abspath(logdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"cannot create logs dir {logdir!r}: {existing!r} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"logs dir {logdir!r} is not writable")
    if config.run_name and os.path.exists(os.path.join(logdir, config.run_name)):
        path = os.path.join(logdir, config.run_name)
        raise FileExistsError(f"run directory {path!r} already exists; choose another --run-name")


def _check_resumable(run_dir, config):
    """The checkpoint manifest of an interrupted run, or None to restart it from epoch 1.

    A run with no checkpoint is restarted only when it wrote nothing an epoch writes."""
    from .checkpoint import CHECKPOINT_DIR, MANIFEST, read_manifest
    from .train import DIST_KVSTORES

    if config.kvstore in DIST_KVSTORES:
        raise ConfigError(
            f"{run_dir}: --resume does not support distributed runs (kvstore "
            f"{config.kvstore}): their optimizer state lives on the parameter servers"
        )
    metrics = os.path.join(run_dir, "metrics.json")
    try:
        with open(metrics, encoding="utf-8") as f:
            finished = json.load(f).get("finished", False)
    except (OSError, ValueError, AttributeError):
        finished = False  # no metrics yet; the checkpoint decides
    if finished:
        raise ConfigError(
            f"{run_dir} already finished its {config.epochs} epochs; nothing to resume"
        )
    manifest = read_manifest(os.path.join(run_dir, CHECKPOINT_DIR))
    if manifest is None:
        written = [f for f in os.listdir(run_dir) if f == "metrics.json" or f.endswith(".params")]
        if written:
            raise ConfigError(
                f"{run_dir} has no checkpoint to resume from (no {CHECKPOINT_DIR}/{MANIFEST}) "
                f"but holds {', '.join(sorted(written))}, which a restart would "
                "overwrite"
            )
    return manifest


def _record_image_shape(config, data):
    """Pictures decoded to a size and channel count chosen from the data: record them, so
    ``embed`` and ``evaluate`` decode other pictures the same way."""
    if not data.name.startswith(("folder:", "rec:", "image:")):
        return config
    shape = data.x_train.shape[1:]
    channels = 1 if len(shape) == 2 else int(shape[0])
    size = f"{shape[-2]}x{shape[-1]}"
    return dataclasses.replace(config, image_size=size, image_channels=channels)


def _check_batch_fits(config, train_set):
    """A batch must fit in the data: offline, ``batch_size`` triplets; online, ``P`` classes."""
    if config.miner == "offline":
        if config.batch_size > len(train_set):
            raise ConfigError(
                f"--batch-size {config.batch_size} is larger than the {len(train_set)} "
                f"training triplets of an epoch; use --batch-size {len(train_set)} or less"
            )
    elif config.pk_classes is not None and config.pk_classes > len(train_set.classes):
        raise ConfigError(
            f"--pk-classes {config.pk_classes} asks for more classes per batch than the "
            f"training data has ({len(train_set.classes)}); use --pk-classes "
            f"{len(train_set.classes)} or less"
        )


def run(config, quiet=False, resume=None):
    """Train one run from a Config; returns the run directory.

    ``resume``: the directory of an interrupted run, continued from its checkpoint
    (``config`` must be the run's own ``config.json``). SIGINT and SIGTERM raise
    :class:`Interrupted`, whose message tells how to resume.
    """
    progress = {}
    with _interrupts():
        try:
            return _run(config, quiet, resume, progress)
        except Interrupted as e:
            e.args = (_interrupt_message(e.signum, config, progress),)
            raise


def _run(config, quiet, resume, progress):
    # MXNet is imported here, not at module import, so `--help` stays instant.
    from .board import BoardCallback
    from .callbacks import (
        CallbackList,
        CheckpointCallback,
        CollapseCallback,
        MetricsCallback,
        ProgressCallback,
    )
    from .checkpoint import CHECKPOINT_DIR, load_checkpoint
    from .data import load_dataset
    from .images import ImageOptions
    from .metrics import evaluate_embeddings
    from .model import model_from_config
    from .train import TripletTrainer, create_kvstore, resolve_contexts, set_seed
    from .triplets import TripletDataset, create_pairs

    t0 = time.perf_counter()
    contexts = resolve_contexts(config.ctx)
    ctx_names = ", ".join(str(c) for c in contexts)
    gpu_note = "" if contexts[0].device_type == "gpu" else " (no GPU visible to MXNet)"
    logger.info("context: %s%s", ctx_names, gpu_note if config.ctx == "auto" else "")
    set_seed(config.seed)

    # Everything that can fail on bad input happens before the run directory exists.
    manifest = _check_resumable(resume, config) if resume else _check_output_dir(config)
    data = load_dataset(
        config.dataset, config.data_dir, logger=logger, images=ImageOptions.from_config(config)
    )
    config = _record_image_shape(config, data)
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
    net, model_name = model_from_config(config, data.x_train.shape[1:], ctx=contexts)
    if model_name != config.model:
        logger.info("model: %s (auto: %s data)", model_name, _shape_text(data.x_train.shape[1:]))
    # The run dir records what ran: "auto" resolved, so the config rebuilds this net.
    config = dataclasses.replace(
        config, model=model_name, input_shape=tuple(int(d) for d in data.x_train.shape[1:])
    )
    _check_batch_fits(config, train_set)
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
    )
    if manifest is not None:
        load_checkpoint(trainer, os.path.join(resume, CHECKPOINT_DIR), manifest)
    if resume:
        # Continued in place: its config, logs and outputs are kept.
        run_dir = os.path.normpath(resume)
    else:
        run_dir = make_run_dir(config, data.name)
        config.save(os.path.join(run_dir, "config.json"))
    progress.update(run_dir=run_dir, trainer=trainer)
    file_log = logging.FileHandler(os.path.join(run_dir, "train.log"))  # appends
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(file_log)
    try:
        logger.info("run directory: %s", run_dir)
        if resume:
            logger.info(
                "resuming after epoch %d of %d (%s)",
                trainer.epoch,
                config.epochs,
                "from its checkpoint" if manifest else "no epoch had finished: from the start",
            )
        logger.debug("config: %s", json.dumps(config.to_dict(), sort_keys=True))
        logger.info(
            "triplets per epoch: %d (class-balanced over %d classes)",
            len(train_set),
            len(train_set.classes),
        )
        raw = evaluate_embeddings(
            data.x_test.reshape(len(data.x_test), -1),
            data.y_test,
            triplets=test_triplets,
            margin=config.margin,
        )
        logger.info(
            "raw pixels: test triplet-acc %.4f P@1 %.4f MAP@R %.4f",
            raw["triplet_accuracy"],
            raw["precision_at_1"],
            raw["map_at_r"],
        )
        rng = np.random.default_rng(config.seed)
        m = min(config.projector_samples, len(data.x_test))
        pick = np.sort(rng.choice(len(data.x_test), size=m, replace=False))
        callbacks = [
            ProgressCallback(bar=False if quiet else None),
            CheckpointCallback(run_dir),
            CollapseCallback(),
            MetricsCallback(
                os.path.join(run_dir, "metrics.json"),
                extra={
                    "version": __version__,
                    "dataset": {
                        "name": data.name,
                        "source": data.source,
                        "train": len(data.y_train),
                        "test": len(data.y_test),
                    },
                    "contexts": [str(c) for c in contexts],
                    "workers": 1 if kvstore is None else kvstore.num_workers,
                    "raw_pixels": raw,
                },
            ),
        ]
        if m:
            callbacks.append(
                BoardCallback(
                    run_dir,
                    data.x_test[pick],
                    data.y_test[pick],
                    class_names=data.class_names,
                    projector_every=config.projector_every,
                )
            )
        if config.plots:
            callbacks.extend(_plot_callbacks(run_dir, data, pick if m >= 2 else None, raw, config))
        trainer.callbacks = CallbackList(callbacks)
        progress["callbacks"] = callbacks
        history = _fit(trainer, callbacks, run_dir)
        logger.info("%s", summary_table(history, raw))
        per_class = history[-1]["test"].get("per_class_precision_at_1") or {}
        logger.debug(
            "per-class test P@1: %s",
            ", ".join(f"{_class_name(data, k)} {v:.3f}" for k, v in per_class.items()),
        )
        final = history[-1]["test"]
        summary = (
            f"done: {config.epochs} epochs in {time.perf_counter() - t0:.1f}s on {ctx_names} | "
            f"test triplet-acc {final['triplet_accuracy']:.4f} P@1 {final['precision_at_1']:.4f} "
            f"MAP@R {final['map_at_r']:.4f} (raw pixels P@1 {raw['precision_at_1']:.4f}) | "
            f"run: {run_dir} | view: tensorboard --logdir {os.path.dirname(run_dir) or os.curdir}"
        )
        print(summary, flush=True)
        logger.debug(summary)
    finally:
        logger.removeHandler(file_log)
        file_log.close()
    return run_dir


def _run_worker(net, train_set, config, contexts, kvstore, t0):
    """Rank > 0 of a distributed run: train its share; rank 0 evaluates and writes the run."""
    from .callbacks import ProgressCallback
    from .train import TripletTrainer

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


def _plot_callbacks(run_dir, data, pick, raw, config):
    """The PNG pictures of a run (see :mod:`gluon_triplet.plots`) as a list of 0 or 1
    callbacks; ``pick`` indexes the projector sample in the test split, None: curves only."""
    import importlib.util

    from .plots import PlotCallback

    missing = [m for m in ("matplotlib", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        logger.warning(
            "no PNG pictures: %s not installed (pip install matplotlib scikit-learn)",
            " and ".join(missing),
        )
        return []
    return [
        PlotCallback(
            run_dir,
            None if pick is None else data.x_test[pick],
            None if pick is None else data.y_test[pick],
            class_names=data.class_names,
            baseline=raw,
            seed=config.seed,
        )
    ]


def _class_name(data, label):
    names = data.class_names
    return names[label] if names and isinstance(label, int) and 0 <= label < len(names) else label


def summary_table(history, baseline=None):
    """A small text table: raw pixels, the untrained net, the best and the last epoch.

    Parameters
    ----------
    history : list of dict
        ``TripletTrainer.history``.
    baseline : dict, optional
        Test metrics of the raw pixels.
    """
    trained = [r for r in history if r["epoch"] > 0]
    rows = []
    if baseline:
        rows.append(("raw pixels", {}, baseline))
    for record in history:
        if record["epoch"] == 0:
            rows.append(("epoch 0 (untrained)", {}, record.get("test") or {}))
    if trained:
        best = max(trained, key=lambda r: (r.get("test") or {}).get("precision_at_1", -1.0))
        last = trained[-1]
        if best is not last:
            rows.append((f"epoch {best['epoch']} (best P@1)", best["train"], best["test"]))
        tag = " (best P@1, last)" if best is last else " (last)"
        rows.append((f"epoch {last['epoch']}{tag}", last["train"], last["test"]))
    columns = [
        ("loss", "train", "loss", "{:.4f}"),
        ("active", "train", "active_fraction", "{:.3f}"),
        ("triplet-acc", "test", "triplet_accuracy", "{:.4f}"),
        ("P@1", "test", "precision_at_1", "{:.4f}"),
        ("MAP@R", "test", "map_at_r", "{:.4f}"),
    ]
    table = [[""] + [c[0] for c in columns]]
    for name, train, test in rows:
        cells = [name]
        for _, split, key, fmt in columns:
            value = (train if split == "train" else test).get(key)
            cells.append("-" if value is None else fmt.format(value))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in table
    ]
    return "\n".join(["summary:"] + ["  " + line.rstrip() for line in lines])
