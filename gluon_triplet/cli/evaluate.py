"""``gluon-triplet evaluate RUN_DIR``: the metrics training reports, for any dataset."""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from ..report import class_name
from .common import add_common_flags, guarded, setup_logging
from .inference import add_inference_flags, embed_checked, load_for_inference

__all__ = ["HELP", "build_parser", "main"]

HELP = "a trained run's metrics on any dataset of the same input shape"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gluon-triplet evaluate",
        description="The metrics training reports (strict triplet accuracy on class-balanced "
        "triples drawn with the run's seed, P@1, R@k, MAP@R, per-class P@1) for a trained "
        "run on any dataset of the same input shape.",
    )
    add_inference_flags(p)
    p.add_argument(
        "--json", action="store_true", help="print the metrics as one JSON object on stdout"
    )
    add_common_flags(p)
    return p


def _evaluate(args: argparse.Namespace) -> None:
    from ..api import evaluate

    net, config, data, x, y = load_for_inference(args)
    emb = embed_checked(net, x, config, args.run_dir)
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
        + ", ".join(f"{class_name(data.class_names, k)} {v:.3f}" for k, v in per_class.items()),
        flush=True,
    )


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet evaluate ...``; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    setup_logging(args.quiet)
    return guarded(_evaluate, args, debug=args.debug)
