"""``gluon-triplet evaluate RUN_DIR``: the metrics training reports, for any dataset."""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

import numpy as np

from ..runs.report import class_name
from .common import add_common_flags, add_split_flag, run_command
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
    add_gallery_flags(p)
    add_common_flags(p)
    return p


def add_gallery_flags(p: argparse.ArgumentParser) -> None:
    """``--query DS --gallery DS`` and their splits."""
    g = p.add_argument_group(
        "query vs gallery",
        "retrieval as usually reported: every query ranks the whole gallery (nothing "
        "excluded), e.g. Fashion test queries against the train gallery",
    )
    g.add_argument("--query", metavar="DS", help="dataset of the queries (with --gallery)")
    g.add_argument("--gallery", metavar="DS", help="dataset of the gallery (with --query)")
    add_split_flag(g, "--query-split", "test", "--query")
    add_split_flag(g, "--gallery-split", "train", "--gallery")


def _comparable(
    labels: np.ndarray, class_names: Optional[Sequence[str]], other: Optional[Sequence[str]]
) -> np.ndarray:
    """Labels as class names when both datasets name their classes (they may number them
    differently), else as they are."""
    if class_names and other:
        return np.asarray(class_names)[labels]
    return labels


def _evaluate_gallery(args: argparse.Namespace) -> None:
    from ..evaluation.retrieval import gallery_retrieval_metrics

    if args.query is None or args.gallery is None:
        raise ValueError("--query and --gallery go together: give both datasets")
    if args.dataset is not None or args.split != "test":
        raise ValueError("--dataset/--split do not apply with --query/--gallery; use --query-split")
    net, config, (qdata, gdata) = load_for_inference(args, args.query, args.gallery)
    qx, qy = qdata.split(args.query_split)
    gx, gy = gdata.split(args.gallery_split)
    qe = embed_checked(net, qx, config, args.run_dir)
    ge = embed_checked(net, gx, config, args.run_dir)
    result = gallery_retrieval_metrics(
        qe,
        _comparable(qy, qdata.class_names, gdata.class_names),
        ge,
        _comparable(gy, gdata.class_names, qdata.class_names),
    )
    query = {"dataset": qdata.name, "split": args.query_split, "samples": len(qy)}
    gallery = {"dataset": gdata.name, "split": args.gallery_split, "samples": len(gy)}
    if args.json:
        doc = {"run_dir": args.run_dir, "params": args.params, "query": query, "gallery": gallery}
        doc["metrics"] = result
        print(json.dumps(doc, indent=2), flush=True)
        return
    recall = _recall_text(result)
    print(
        f"{qdata.name} {args.query_split} queries ({result['num_queries']} scored of {len(qy)}) "
        f"against {gdata.name} {args.gallery_split} gallery ({len(gy)}) with {args.run_dir} "
        f"({args.params}): P@1 {result['precision_at_1']:.4f} MAP@R {result['map_at_r']:.4f} "
        f"{recall}",
        flush=True,
    )


def _recall_text(result: dict) -> str:
    """``R@1 0.9 R@2 0.95 ...`` from a metrics dict's ``recall_at_<k>`` keys."""
    return " ".join(
        f"R@{key[len('recall_at_') :]} {value:.4f}"
        for key, value in result.items()
        if key.startswith("recall_at_")
    )


def _clustering_text(result: dict) -> str:
    """``NMI 0.9 AMI 0.8`` (``on a sample of N`` when k-means clustered a sample), or
    ``NMI/AMI skipped`` when :func:`~gluon_triplet.evaluation.clustering.clustering_metrics`
    skipped k-means (its reason is logged)."""
    if "nmi" not in result:
        return "NMI/AMI skipped"
    sample = result.get("clustering_points")
    on = f" (on a sample of {sample})" if sample else ""
    return f"NMI {result['nmi']:.4f} AMI {result['ami']:.4f}{on}"


def _evaluate(args: argparse.Namespace) -> None:
    from ..data.validation import unseen_test_classes
    from ..runs.api import evaluate
    from ..runs.selection import open_set_note

    if args.query is not None or args.gallery is not None:
        return _evaluate_gallery(args)
    net, config, (data,) = load_for_inference(args, args.dataset)
    x, y = data.split(args.split)
    # Whether the dataset's test classes are training classes: retrieval among classes
    # never seen in training (an open set) is the usual protocol of folder data.
    unseen = len(unseen_test_classes(data.y_train, data.y_test))
    note = open_set_note(data.y_train, data.y_test)
    emb = embed_checked(net, x, config, args.run_dir)
    result = evaluate(
        emb,
        y,
        margin=config.margin,
        seed=config.seed,
        per_class=True,
        clustering=True,
        class_names=data.class_names,
    )
    if args.json:
        doc = {
            "run_dir": args.run_dir,
            "params": args.params,
            "dataset": data.name,
            "split": args.split,
            "samples": len(y),
            "open_set": bool(unseen),
            "unseen_test_classes": unseen,
            "metrics": result,
        }
        print(json.dumps(doc, indent=2), flush=True)
        return
    recall = _recall_text(result)
    if note:
        print(note, flush=True)
    print(
        f"{data.name} {args.split} ({len(y)} samples) with {args.run_dir} ({args.params}): "
        f"triplet-acc {result['triplet_accuracy']:.4f} P@1 {result['precision_at_1']:.4f} "
        f"MAP@R {result['map_at_r']:.4f} {recall} {_clustering_text(result)} "
        f"|emb| {result['embedding_norm']:.3f}",
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
    return run_command(build_parser(), _evaluate, argv)
