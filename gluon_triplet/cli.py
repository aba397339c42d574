"""Command line: ``gluon-triplet [train] [options]`` and ``python run_train.py [options]``.

The train parser and the config it resolves live here; one run is :mod:`gluon_triplet.run`,
the other subcommands are :mod:`gluon_triplet.commands` and :mod:`gluon_triplet.launch`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from . import __version__
from .commands import (
    _cmd_embed,
    _cmd_evaluate,
    _cmd_view,
    _guarded,
    build_embed_parser,
    build_evaluate_parser,
    build_view_parser,
)
from .config import PRESETS, Config, ConfigError
from .run import run

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "main",
    "resume_config",
]

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
        help=f"mnist, fashion-mnist, mnist-5k, idx:DIR, npz:FILE, folder:DIR (class folders of "
        "images), rec:PREFIX (RecordIO from gluon-triplet pack) "
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
    g.add_argument(
        "--channels",
        type=int,
        nargs="+",
        metavar="N",
        help="cnn: output channels of its 5x5 stride-2 convolutions (default: 32 64)",
    )
    g.add_argument(
        "--batch-norm",
        action="store_true",
        help="cnn: BatchNorm between each convolution and its ReLU (default: off)",
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
        choices=("offline", "batch-hard", "semi-hard", "batch-all", "distance-weighted"),
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
    g.add_argument(
        "--warmup-epochs",
        type=float,
        help="ramp the learning rate linearly from 0 over this many epochs "
        f"(default: {D.warmup_epochs:g})",
    )
    g.add_argument(
        "--soft-margin",
        action="store_true",
        help="soft-margin triplet loss softplus(d(a,p) - d(a,n)) on Euclidean distances "
        "(Hermans et al. 2017) instead of TripletLoss's hinge; the margin then only steers "
        "miners (default: off)",
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
        _setup_logging(getattr(args, "quiet", False))
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
