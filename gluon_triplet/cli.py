"""Command line: ``gluon-triplet [train] [options]`` and ``python run_train.py [options]``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import signal
import sys
import threading
import time

import numpy as np

from . import __version__
from .config import PRESETS, Config, ConfigError

__all__ = [
    "SUBCOMMANDS",
    "Interrupted",
    "build_embed_parser",
    "build_evaluate_parser",
    "build_parser",
    "build_view_parser",
    "main",
    "resume_config",
    "run",
    "summary_table",
]

logger = logging.getLogger("gluon_triplet")

D = Config()  # defaults, for the help texts only


def build_parser():
    p = argparse.ArgumentParser(
        prog="gluon-triplet",
        description="Train an embedding net with triplet loss (MXNet Gluon) and write the "
        "learned embedding for TensorBoard's projector.",
        argument_default=argparse.SUPPRESS,  # unset flags leave config/JSON values alone
        epilog="Other subcommands: gluon-triplet embed|evaluate|view|launch --help. "
        "`gluon-triplet train [options]` is the same as `gluon-triplet [options]`.",
    )
    a = p.add_argument
    a("--version", action="version", version=f"%(prog)s {__version__}")
    a(
        "--preset",
        choices=sorted(PRESETS),
        help="a named recipe under --config and flags; reference = the reference recipe "
        "(offline random triplets, Dense 256-128 ReLU MLP, SGD 0.05, batch 1024, margin 1) "
        "(default: default, the measured recipe: semi-hard mining, normalised embeddings, "
        "Adam, cosine schedule)",
    )
    a(
        "--config",
        dest="config_file",
        metavar="FILE.json",
        help="read settings from a JSON file (keys as in a run's config.json); flags override it",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        help=f"mnist, fashion-mnist, mnist-5k, idx:DIR or npz:FILE "
        f"(default: {D.dataset}; offline it falls back to the bundled mnist-5k)",
    )
    g.add_argument(
        "--data-dir",
        help="directory with the dataset's IDX files "
        "(default: MXNet's dataset cache, Debian's for fashion-mnist, else download)",
    )
    g.add_argument(
        "--triplets-per-class",
        type=int,
        help="cap on triplets each class anchors per epoch (default: smallest class size - 1)",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        help="embedding net: mlp, cnn, or auto = cnn for image data (H x W samples), else "
        f"mlp (default: {D.model})",
    )
    g.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        metavar="N",
        help="hidden layer widths (default: the model's: 256 for the mlp, none for the cnn)",
    )
    g.add_argument("--embedding-size", type=int, help=f"default: {D.embedding_size}")
    g.add_argument(
        "--output",
        choices=("relu", "linear"),
        help=f"activation of the embedding layer (default: {D.output})",
    )
    g.add_argument(
        "--normalize",
        action="store_true",
        help=f"L2-normalise embeddings (default: {'on' if D.normalize else 'off'})",
    )
    g.add_argument("--no-normalize", dest="normalize", action="store_false", help="raw embeddings")
    g.add_argument("--init-scale", type=float, help=f"Uniform init scale (default: {D.init_scale})")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help=f"default: {D.epochs}")
    g.add_argument(
        "--batch-size",
        type=int,
        help=f"triplets per batch with --miner offline (default: {D.batch_size})",
    )
    g.add_argument("--margin", type=float, help=f"TripletLoss margin (default: {D.margin})")
    g.add_argument("--optimizer", choices=("sgd", "adam"), help=f"default: {D.optimizer}")
    g.add_argument("--lr", type=float, help=f"learning rate (default: {D.lr})")
    g.add_argument("--momentum", type=float, help=f"SGD momentum (default: {D.momentum})")
    g.add_argument("--weight-decay", type=float, help=f"default: {D.weight_decay}")
    g.add_argument(
        "--ctx",
        help="auto, cpu, gpu, gpu:0,1 or cpu:0,1 "
        f"(default: {D.ctx} = every GPU if MXNet sees one, else the CPU)",
    )
    g.add_argument(
        "--kvstore",
        help="MXNet kvstore: device or local (several contexts), dist_sync or dist_async "
        f"(several workers, under gluon-triplet launch) (default: {D.kvstore})",
    )
    g.add_argument("--seed", type=int, help=f"default: {D.seed}")
    g = p.add_argument_group("triplet mining")
    g.add_argument(
        "--miner",
        choices=("offline", "batch-hard", "semi-hard", "batch-all"),
        help="offline: balanced random triplets per epoch (reference recipe); the others mine "
        f"online in P x K batches (default: {D.miner})",
    )
    g.add_argument(
        "-P", "--pk-classes", type=int, help=f"classes per P x K batch (default: {D.pk_classes})"
    )
    g.add_argument(
        "-K",
        "--pk-samples",
        type=int,
        help=f"samples per class in a batch (default: {D.pk_samples})",
    )
    g.add_argument(
        "--distance",
        choices=("squared", "euclidean", "cosine"),
        help=f"distance online miners rank by (default: {D.distance})",
    )
    g.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        help=f"learning-rate schedule over all steps (default: {D.lr_schedule})",
    )
    g = p.add_argument_group("output")
    g.add_argument("--logdir", help=f"where run directories go (default: {D.logdir})")
    g.add_argument(
        "--run-name",
        help="run directory name; an existing one is refused (default: <timestamp>-<dataset>)",
    )
    g.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run in RUN_DIR from its last finished epoch, with its "
        "own config.json (no other training flags); the result equals an uninterrupted run "
        "(default: start a new run)",
    )
    g.add_argument(
        "--projector-samples",
        type=int,
        help=f"test samples in the projector (default: {D.projector_samples})",
    )
    g.add_argument(
        "--projector-every",
        type=int,
        metavar="N",
        help="also write the projector embedding every N epochs, one tensor per epoch "
        f"(embedding_<epoch>) (default: {D.projector_every} = only the final one)",
    )
    g.add_argument(
        "--no-plots",
        dest="plots",
        action="store_false",
        help="do not write the PNG pictures (curves, PCA, t-SNE) into the run dir "
        "(default: write them)",
    )
    g.add_argument(
        "--log-every", type=int, help=f"batches between loss read-backs (default: {D.log_every})"
    )
    g.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings, errors and the summary"
    )
    g.add_argument(
        "-v", "--verbose", action="store_true", help="also debug lines: config, per-class P@1"
    )
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def config_from_args(args):
    """Defaults <- preset <- JSON file <- explicit flags."""
    values = dict(PRESETS[getattr(args, "preset", "default")])
    if "config_file" in args:
        loaded = Config.load(args.config_file)  # validates every key and type
        with open(args.config_file, encoding="utf-8") as f:
            # Only the keys the file sets: the others keep the preset's values.
            values.update({key: getattr(loaded, key) for key in json.load(f)})
    for key, value in vars(args).items():
        if key not in ("config_file", "preset", "quiet", "verbose", "debug", "resume"):
            values[key] = list(value) if isinstance(value, tuple) else value
    return Config.from_dict(values)


def _setup_logging(quiet, verbose=False):
    log = logging.getLogger("gluon_triplet")
    log.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    return log


class _Formatter(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        return msg if record.levelno == logging.INFO else f"{record.levelname}: {msg}"


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


# ------------------------------------------------- reliability: checks, signals, resume


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


_RESUME_KEEPS = ("resume", "quiet", "verbose", "debug")


def resume_config(args):
    """The config of the run ``args.resume`` names, read from its ``config.json``."""
    run_dir = args.resume
    extra = sorted(k for k in vars(args) if k not in _RESUME_KEEPS)
    if extra:
        flags = ", ".join(
            {"config_file": "--config", "plots": "--no-plots"}.get(k, "--" + k.replace("_", "-"))
            for k in extra
        )
        raise ConfigError(f"--resume continues a run with its own config.json; drop {flags}")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir!r} is not a run directory: it has no config.json")
    return Config.load(path)


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
    data = load_dataset(config.dataset, config.data_dir, logger=logger)
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
    config = dataclasses.replace(config, model=model_name)
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


# ---------------------------------------------------------------------- other subcommands


def _common_flags(p):
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _inference_flags(p):
    """Flags of the subcommands that use a trained run: embed and evaluate."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by training")
    p.add_argument("--dataset", help="dataset spec as for training (default: the run's own)")
    p.add_argument(
        "--data-dir", help="IDX files for mnist / fashion-mnist (default: as for training)"
    )
    p.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="test",
        help="which part of the dataset (default: test)",
    )
    p.add_argument(
        "--params",
        default="best",
        help="best, last, or a .params file in/under RUN_DIR (default: best)",
    )
    p.add_argument(
        "--ctx", default="cpu", help="context to run the net on, e.g. cpu or gpu:0 (default: cpu)"
    )


def build_embed_parser():
    p = argparse.ArgumentParser(
        prog="gluon-triplet embed",
        description="Embed a dataset with a trained run's net. FILE.npy writes the (N, D) "
        "float32 embeddings there and the (N,) int64 labels to FILE-labels.npy; FILE.npz "
        "writes one archive with arrays 'embeddings', 'labels' (and 'class_names' when known).",
    )
    _inference_flags(p)
    p.add_argument("--out", required=True, metavar="FILE.npy|FILE.npz", help="output file")
    p.add_argument(
        "--projector",
        metavar="DIR",
        help="also write a TensorBoard projector run (tensor 'embedding', labels, sprite) "
        "into DIR, which must be new or empty; see it with `gluon-triplet view DIR`",
    )
    p.add_argument(
        "--projector-samples",
        type=int,
        default=1000,
        help="samples in the projector, drawn with the run's seed (default: 1000; 0: all)",
    )
    _common_flags(p)
    return p


def build_evaluate_parser():
    p = argparse.ArgumentParser(
        prog="gluon-triplet evaluate",
        description="The metrics training reports (strict triplet accuracy on class-balanced "
        "triples drawn with the run's seed, P@1, R@k, MAP@R, per-class P@1) for a trained "
        "run on any dataset of the same input shape.",
    )
    _inference_flags(p)
    p.add_argument(
        "--json", action="store_true", help="print the metrics as one JSON object on stdout"
    )
    _common_flags(p)
    return p


def build_view_parser():
    p = argparse.ArgumentParser(
        prog="gluon-triplet view",
        description="Start TensorBoard on a run directory or a logs directory and print its URL; "
        "Ctrl-C stops it.",
    )
    p.add_argument(
        "logdir",
        nargs="?",
        default=D.logdir,
        metavar="RUN_DIR|LOGDIR",
        help=f"what TensorBoard reads (default: {D.logdir})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: 0 = a free port)")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for TensorBoard to answer (default: 120)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def _guarded(args, fn):
    """Run a subcommand: bad input -> one ``error:`` line and exit 2."""
    _setup_logging(getattr(args, "quiet", False))
    try:
        fn(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, ValueError, OSError, json.JSONDecodeError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _load_for_inference(args):
    """The run's net and config, and the samples and labels the flags ask for."""
    from .api import load_run, params_path
    from .data import load_dataset
    from .train import resolve_contexts

    if not os.path.isdir(args.run_dir):
        raise FileNotFoundError(f"run directory {args.run_dir!r} does not exist")
    if not os.path.isfile(os.path.join(args.run_dir, "config.json")):
        raise FileNotFoundError(f"{args.run_dir!r} is not a run directory: it has no config.json")
    params_path(args.run_dir, args.params)
    ctx = resolve_contexts(args.ctx)[0]
    # Data before the net: a bad --dataset is reported without loading MXNet parameters.
    config = None
    dataset, data_dir = args.dataset, args.data_dir
    if dataset is None:
        from .config import Config

        config = Config.load(os.path.join(args.run_dir, "config.json"))
        dataset, data_dir = config.dataset, data_dir or config.data_dir
    data = load_dataset(dataset, data_dir, logger=logger)
    net, config = load_run(args.run_dir, params=args.params, ctx=ctx)
    if args.split == "test":
        x, y = data.x_test, data.y_test
    elif args.split == "train":
        x, y = data.x_train, data.y_train
    else:
        x, y = (
            np.concatenate([data.x_train, data.x_test]),
            np.concatenate([data.y_train, data.y_test]),
        )
    return net, config, data, x, y


def _embed_checked(net, x, config, run_dir):
    """``embed``, with a shape mismatch reported as one line instead of MXNet's trace."""
    import mxnet as mx

    from .api import embed

    try:
        embed(net, x[:1], ctx=None)
    except mx.base.MXNetError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"samples of shape {tuple(x.shape[1:])} do not fit the model of {run_dir} "
            f"({config.model}): {first}"
        ) from None
    return embed(net, x, batch_size=config.eval_batch_size)


def _embed_outputs(out):
    if out.endswith(".npy"):
        return [out, out[: -len(".npy")] + "-labels.npy"]
    if out.endswith(".npz"):
        return [out]
    raise ValueError(f"--out must end in .npy or .npz, got {out!r}")


def _atomic_save(path, save):
    # np.save/np.savez append a suffix to names without one, so the temp name keeps it.
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{base}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cmd_embed(args):
    outputs = _embed_outputs(args.out)
    for path in outputs:
        if os.path.exists(path):
            raise FileExistsError(f"{path} already exists; choose another --out")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"directory {parent!r} for --out does not exist")
    if args.projector is not None:
        if os.path.isdir(args.projector) and os.listdir(args.projector):
            raise FileExistsError(f"--projector directory {args.projector!r} is not empty")
        if os.path.exists(args.projector) and not os.path.isdir(args.projector):
            raise FileExistsError(f"--projector {args.projector!r} exists and is not a directory")
    if args.projector_samples < 0:
        raise ValueError(f"--projector-samples must be >= 0, got {args.projector_samples}")
    net, config, data, x, y = _load_for_inference(args)
    emb = _embed_checked(net, x, config, args.run_dir)
    if args.out.endswith(".npy"):
        _atomic_save(outputs[0], lambda p: np.save(p, emb))
        _atomic_save(outputs[1], lambda p: np.save(p, y))
    else:
        arrays = {"embeddings": emb, "labels": y}
        if data.class_names:
            arrays["class_names"] = np.array(data.class_names)
        _atomic_save(outputs[0], lambda p: np.savez(p, **arrays))
    print(
        f"embedded {len(emb)} {args.split} samples of {data.name} with {args.run_dir} "
        f"({args.params}): {emb.shape} float32 -> {', '.join(outputs)}",
        flush=True,
    )
    if args.projector is not None:
        from mxboard import SummaryWriter

        from .board import sprite_images, write_projector

        n = len(emb) if args.projector_samples == 0 else min(args.projector_samples, len(emb))
        pick = np.sort(np.random.default_rng(config.seed).choice(len(emb), size=n, replace=False))
        names = data.class_names
        labels = [names[int(v)] if names else str(v) for v in y[pick]]
        os.makedirs(args.projector, exist_ok=True)
        writer = SummaryWriter(logdir=args.projector, verbose=False)
        try:
            write_projector(writer, "embedding", emb[pick], labels, sprite_images(x[pick]))
        finally:
            writer.close()
        print(
            f"projector: {n} points in {args.projector} | view: gluon-triplet view "
            f"{args.projector}",
            flush=True,
        )


def _cmd_evaluate(args):
    from .api import evaluate

    net, config, data, x, y = _load_for_inference(args)
    emb = _embed_checked(net, x, config, args.run_dir)
    result = evaluate(emb, y, margin=config.margin, seed=config.seed, per_class=True)
    if args.json:
        doc = {
            "run_dir": args.run_dir,
            "params": args.params,
            "dataset": data.name,
            "split": args.split,
            "samples": len(y),
            "metrics": result,
        }
        print(json.dumps(doc, indent=2), flush=True)
        return
    recall = " ".join(
        f"R@{key[len('recall_at_') :]} {value:.4f}"
        for key, value in result.items()
        if key.startswith("recall_at_")
    )
    print(
        f"{data.name} {args.split} ({len(y)} samples) with {args.run_dir} ({args.params}): "
        f"triplet-acc {result['triplet_accuracy']:.4f} P@1 {result['precision_at_1']:.4f} "
        f"MAP@R {result['map_at_r']:.4f} {recall} |emb| {result['embedding_norm']:.3f}",
        flush=True,
    )
    per_class = result["per_class_precision_at_1"]
    print(
        "per-class P@1: "
        + ", ".join(f"{_class_name(data, k)} {v:.3f}" for k, v in per_class.items()),
        flush=True,
    )


def _tensorboard_command():
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "tensorboard.main"]


def _free_port(host):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _cmd_view(args):
    import signal
    import subprocess
    import threading
    import urllib.request

    if not os.path.isdir(args.logdir):
        raise FileNotFoundError(f"log directory {args.logdir!r} does not exist")
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    port = args.port or _free_port(args.host)
    cmd = _tensorboard_command() + [
        "--logdir",
        args.logdir,
        "--host",
        args.host,
        "--port",
        str(port),
        "--load_fast=false",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    # `kill` of this process stops TensorBoard too, instead of orphaning it. Signal handlers
    # can only be set from the main thread; elsewhere the caller owns the signals.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) if in_main else None
    try:
        poll_host = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
        url = f"http://{poll_host}:{port}/"
        deadline = time.monotonic() + args.timeout
        while True:
            if proc.poll() is not None:
                raise OSError(f"tensorboard exited with status {proc.returncode} (see above)")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise OSError(
                        f"tensorboard did not answer on {url} within {args.timeout:g}s"
                    ) from None
                time.sleep(0.3)
        print(f"TensorBoard: {url} | projector: {url}#projector | Ctrl-C stops it", flush=True)
        proc.wait()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _launch(argv):
    import importlib

    try:
        module = importlib.import_module(f"{__package__}.launch")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.launch":
            raise
        print(
            "error: the launch subcommand is not available: this installation has no "
            f"{__package__}.launch module",
            file=sys.stderr,
        )
        return 2
    return module.main(argv)


def _subcommand(parser_factory, fn):
    def command(argv):
        args = parser_factory().parse_args(argv)
        return _guarded(args, fn)

    return command


#: ``gluon-triplet <name> ...``; any other first argument means ``train``.
SUBCOMMANDS = {
    "train": None,
    "embed": _subcommand(build_embed_parser, _cmd_embed),
    "evaluate": _subcommand(build_evaluate_parser, _cmd_evaluate),
    "view": _subcommand(build_view_parser, _cmd_view),
    "launch": _launch,
}


def main(argv=None):
    """Entry point of ``gluon-triplet`` and ``run_train.py``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        command, argv = SUBCOMMANDS[argv[0]], argv[1:]
        if command is not None:
            return command(argv)
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    _setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        resume = getattr(args, "resume", None)
        config = resume_config(args) if resume else config_from_args(args)
        run(config, quiet=getattr(args, "quiet", False), resume=resume)
    except KeyboardInterrupt as e:
        # 128 + the signal number, as a shell reports a process killed by it.
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"error: {e or 'interrupted'}", file=sys.stderr)
        return 128 + signum
    except (ConfigError, ValueError, OSError, FloatingPointError, json.JSONDecodeError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
