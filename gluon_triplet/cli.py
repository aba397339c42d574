"""Command line: ``gluon-triplet [train] [options]`` and ``python run_train.py [options]``."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import sys
import time

import numpy as np

from . import __version__
from .config import Config, ConfigError

__all__ = ["build_parser", "main", "run"]

logger = logging.getLogger("gluon_triplet")

D = Config()  # defaults, for the help texts only


def build_parser():
    p = argparse.ArgumentParser(
        prog="gluon-triplet",
        description="Train an embedding net with triplet loss (MXNet Gluon) and write the "
        "learned embedding for TensorBoard's projector.",
        argument_default=argparse.SUPPRESS,  # unset flags leave config/JSON values alone
    )
    a = p.add_argument
    a("--version", action="version", version=f"%(prog)s {__version__}")
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
    g.add_argument("--model", help=f"embedding net (default: {D.model})")
    g.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        metavar="N",
        help=f"hidden layer widths (default: {' '.join(map(str, D.hidden))})",
    )
    g.add_argument("--embedding-size", type=int, help=f"default: {D.embedding_size}")
    g.add_argument(
        "--output",
        choices=("relu", "linear"),
        help=f"activation of the embedding layer (default: {D.output})",
    )
    g.add_argument(
        "--normalize", action="store_true", help="L2-normalise embeddings (default: off)"
    )
    g.add_argument("--init-scale", type=float, help=f"Uniform init scale (default: {D.init_scale})")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help=f"default: {D.epochs}")
    g.add_argument("--batch-size", type=int, help=f"triplets per batch (default: {D.batch_size})")
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
    g.add_argument("--kvstore", help=f"kvstore for several contexts (default: {D.kvstore})")
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
        "--projector-samples",
        type=int,
        help=f"test samples in the projector (default: {D.projector_samples})",
    )
    g.add_argument(
        "--log-every", type=int, help=f"batches between loss read-backs (default: {D.log_every})"
    )
    g.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings, errors and the summary"
    )
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def config_from_args(args):
    """Defaults <- JSON file <- explicit flags."""
    values = {}
    if "config_file" in args:
        values.update(Config.load(args.config_file).to_dict())
    for key, value in vars(args).items():
        if key not in ("config_file", "quiet", "debug"):
            values[key] = list(value) if isinstance(value, tuple) else value
    return Config.from_dict(values)


def _setup_logging(quiet):
    log = logging.getLogger("gluon_triplet")
    log.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    return log


class _Formatter(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        return msg if record.levelno == logging.INFO else f"{record.levelname}: {msg}"


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


def run(config, quiet=False):
    """Train one run from a Config; returns the run directory."""
    # MXNet is imported here, not at module import, so `--help` stays instant.
    from .board import BoardCallback
    from .callbacks import CheckpointCallback, MetricsCallback, ProgressCallback
    from .data import load_dataset
    from .metrics import evaluate_embeddings
    from .model import build_model
    from .train import TripletTrainer, resolve_contexts, set_seed
    from .triplets import TripletDataset, create_pairs

    t0 = time.perf_counter()
    contexts = resolve_contexts(config.ctx)
    ctx_names = ", ".join(str(c) for c in contexts)
    gpu_note = "" if contexts[0].device_type == "gpu" else " (no GPU visible to MXNet)"
    logger.info("context: %s%s", ctx_names, gpu_note if config.ctx == "auto" else "")
    set_seed(config.seed)

    # Everything that can fail on bad input happens before the run directory exists.
    data = load_dataset(config.dataset, config.data_dir, logger=logger)
    train_set = TripletDataset(
        data.x_train, data.y_train, seed=config.seed, triplets_per_class=config.triplets_per_class
    )
    test_triplets = create_pairs(data.y_test, seed=config.seed, warn=False)
    net = build_model(
        config.model,
        init_scale=config.init_scale,
        ctx=contexts,
        hidden=config.hidden,
        embedding_size=config.embedding_size,
        output=config.output,
        normalize=config.normalize,
    )
    run_dir = make_run_dir(config, data.name)
    config.save(os.path.join(run_dir, "config.json"))
    file_log = logging.FileHandler(os.path.join(run_dir, "train.log"))
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(file_log)
    try:
        logger.info("run directory: %s", run_dir)
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
                    "raw_pixels": raw,
                },
            ),
        ]
        if m:
            callbacks.append(
                BoardCallback(
                    run_dir, data.x_test[pick], data.y_test[pick], class_names=data.class_names
                )
            )
        trainer = TripletTrainer(
            net,
            train_set,
            config,
            contexts,
            test_x=data.x_test,
            test_y=data.y_test,
            test_triplets=test_triplets,
            callbacks=callbacks,
        )
        history = trainer.fit()
        final = history[-1]["test"]
        summary = (
            f"done: {config.epochs} epochs in {time.perf_counter() - t0:.1f}s on {ctx_names} | "
            f"test triplet-acc {final['triplet_accuracy']:.4f} P@1 {final['precision_at_1']:.4f} "
            f"MAP@R {final['map_at_r']:.4f} (raw pixels P@1 {raw['precision_at_1']:.4f}) | "
            f"run: {run_dir} | view: tensorboard --logdir {config.logdir}"
        )
        print(summary, flush=True)
        logger.debug(summary)
    finally:
        logger.removeHandler(file_log)
        file_log.close()
    return run_dir


def main(argv=None):
    """Entry point of ``gluon-triplet`` and ``run_train.py``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    _setup_logging(getattr(args, "quiet", False))
    try:
        config = config_from_args(args)
        run(config, quiet=getattr(args, "quiet", False))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, ValueError, OSError, FloatingPointError, json.JSONDecodeError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
