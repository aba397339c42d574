"""``gluon-triplet export RUN_DIR --format onnx|mxnet --out DIR``: a trained run's net as
ONNX (served without MXNet, e.g. by onnxruntime) or MXNet symbol + params, verified."""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from .common import add_common_flags, add_run_flags, check_new_path, run_command

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
    add_run_flags(p)
    p.add_argument("--format", choices=("onnx", "mxnet"), default="onnx", help="default: onnx")
    p.add_argument("--out", required=True, metavar="DIR", help="new directory to write")
    p.add_argument(
        "--dataset",
        help="verify on this dataset's first 16 test samples (default: the run's own "
        "dataset when it can be read here, else 16 uniform [0, 1) samples of the run's "
        "recorded input shape; the output says which)",
    )
    add_common_flags(p)
    return p


def _export(args: argparse.Namespace) -> None:
    from ..runs.exported import export_run

    check_new_path(args.out, "--out")
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
    return run_command(build_parser(), _export, argv)
