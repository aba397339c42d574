"""``gluon-triplet export RUN_DIR --format onnx|mxnet --out DIR``: a trained run's net as
ONNX (served without MXNet, e.g. by onnxruntime) or MXNet symbol + params, verified."""

from __future__ import annotations

import argparse
import os
from typing import Sequence

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
        "the input name and shape, and for pictures how they become the input (size, "
        "channels, resize and crop, scaling).",
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
        help="verify on this dataset's first 16 test samples (default: the run's own "
        "dataset when it can be read here, else 16 uniform [0, 1) samples of the run's "
        "recorded input shape; the output says which)",
    )
    p.add_argument(
        "--data-dir", help="IDX files for mnist / fashion-mnist (default: as for training)"
    )
    add_common_flags(p)
    return p


def _export(args: argparse.Namespace) -> None:
    from ..runs.exported import export_run

    if os.path.exists(args.out):
        raise FileExistsError(f"{args.out} already exists; choose a new --out directory")
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent!r} for --out does not exist")
    doc, source = export_run(
        args.run_dir, args.out, args.format, args.params, args.dataset, args.data_dir
    )
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
