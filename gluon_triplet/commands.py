"""The inference subcommands: ``gluon-triplet embed``, ``evaluate`` and ``view``.

``embed`` and ``evaluate`` load a trained run (its net and ``config.json``) and apply it to a
dataset; ``view`` serves a run or logs directory with TensorBoard. Each ``_cmd_*`` takes the
parsed arguments of its ``build_*_parser``; :func:`_guarded` turns bad input into one
``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np

from .config import Config, ConfigError, atomic_save
from .run import _class_name

__all__ = [
    "build_embed_parser",
    "build_evaluate_parser",
    "build_view_parser",
]

logger = logging.getLogger("gluon_triplet")

D = Config()  # defaults, for the help texts only


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
    from .images import ImageOptions

    config = Config.load(os.path.join(args.run_dir, "config.json"))
    dataset, data_dir = args.dataset, args.data_dir
    if dataset is None:
        dataset, data_dir = config.dataset, data_dir or config.data_dir
    # Pictures are decoded to the run's recorded size and channels, whatever the source.
    data = load_dataset(dataset, data_dir, logger=logger, images=ImageOptions.from_config(config))
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
        atomic_save(outputs[0], lambda p: np.save(p, emb))
        atomic_save(outputs[1], lambda p: np.save(p, y))
    else:
        arrays = {"embeddings": emb, "labels": y}
        if data.class_names:
            arrays["class_names"] = np.array(data.class_names)
        atomic_save(outputs[0], lambda p: np.savez(p, **arrays))
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
