"""``gluon-triplet export RUN_DIR --format onnx|mxnet --out DIR``: a trained run's net as
ONNX (served without MXNet, e.g. by onnxruntime) or MXNet symbol + params, verified."""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np

from .common import add_common_flags, guarded, setup_logging

__all__ = ["HELP", "build_parser", "main"]

HELP = "export a run's net to ONNX or MXNet symbol+params, checked against the net"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gluon-triplet export",
        description="Export a trained run's embedding net to a new directory: --format onnx "
        "writes DIR/model.onnx with a dynamic batch dimension (runs in onnxruntime, no MXNet "
        "needed); --format mxnet writes model-symbol.json + model-0000.params "
        "(gluon.SymbolBlock.imports). The export embeds a batch of 16 samples and must "
        "match the net to 1e-4, else nothing is written. DIR/export.json records "
        "the input name and shape.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by training")
    p.add_argument("--format", choices=("onnx", "mxnet"), default="onnx", help="default: onnx")
    p.add_argument("--out", required=True, metavar="DIR", help="new directory to write")
    p.add_argument(
        "--params",
        default="best",
        help="best, last, or a .params file in/under RUN_DIR (default: best)",
    )
    p.add_argument(
        "--dataset",
        help="verify on this dataset's first 16 test samples (default: 16 uniform [0, 1) "
        "samples of the run's recorded input shape, or its own dataset if it has none)",
    )
    p.add_argument(
        "--data-dir", help="IDX files for mnist / fashion-mnist (default: as for training)"
    )
    add_common_flags(p)
    return p


def _export(args: argparse.Namespace) -> None:
    import logging

    from ..data.datasets import load_dataset
    from ..data.decoding import ImageOptions
    from ..io import sha256_file
    from ..nets.export import export_model
    from ..runs.api import load_run
    from ..runs.rundir import RunDir

    if os.path.exists(args.out):
        raise FileExistsError(f"{args.out} already exists; choose a new --out directory")
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent!r} for --out does not exist")
    run = RunDir.open(args.run_dir)
    params_file = run.params_path(args.params)
    config = run.load_config()
    if args.dataset is None and config.input_shape is not None:
        # The run recorded its sample shape: no need to read the data. Uniform [0, 1)
        # samples are in the range of the pixels the net was trained on.
        samples = np.random.default_rng(0).random((16, *config.input_shape), dtype=np.float32)
        source = "random [0, 1)"
    else:
        dataset = args.dataset or config.dataset
        data_dir = args.data_dir or (config.data_dir if args.dataset is None else None)
        data = load_dataset(
            dataset,
            data_dir,
            logger=logging.getLogger("gluon_triplet"),
            images=ImageOptions.from_config(config),
        )
        samples, source = data.x_test[:16], f"{data.name} test"
    net, config = load_run(run.path, params=args.params)
    # The graph's own input layout (EmbeddingCNN adds the channel axis outside it).
    batch = getattr(net, "prepare_input", lambda a: a)(samples)
    info = {
        "run_dir": os.path.abspath(run.path),
        "params_file": os.path.basename(params_file),
        "params_sha256": sha256_file(params_file),
        "dataset": config.dataset,
        "model": config.model,
        "distance": config.distance,
        "normalize": config.normalize,
    }
    doc = export_model(net, batch.shape[1:], args.out, format=args.format, batch=batch, info=info)
    shape = ", ".join("B" if s is None else str(s) for s in doc["input"]["shape"])
    print(
        f"exported {args.run_dir} ({args.params}) as {args.format} -> "
        f"{', '.join(os.path.join(args.out, f) for f in doc['files'])}: input "
        f"{doc['input']['name']!r} ({shape}) float32 -> (B, {doc['embedding_size']}); "
        f"max |diff| vs the net {doc['max_abs_diff']:.1e} on {doc['verified_on']} "
        f"{source} samples",
        flush=True,
    )


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet export ...``; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    setup_logging(args.quiet)
    return guarded(_export, args, debug=args.debug)
