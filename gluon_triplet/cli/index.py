"""``gluon-triplet index RUN_DIR --dataset DS --out INDEX_DIR``: embed a dataset with a
trained run's net and save a faiss nearest-neighbour index of it."""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Sequence

from .common import add_common_flags, check_new_path, run_command
from .inference import (
    add_inference_flags,
    embed_checked,
    load_for_inference,
)

__all__ = ["HELP", "build_parser", "main"]

HELP = "build a nearest-neighbour index (faiss) of a dataset embedded by a run"


def build_parser() -> argparse.ArgumentParser:
    from ..search.index import DEFAULT_PARAMS

    p = argparse.ArgumentParser(
        prog="gluon-triplet index",
        description="Embed a dataset with a trained run's net and write a faiss index to a new "
        "directory: the index, ids, labels, class names and a manifest (run, params SHA-256, "
        "dataset, metric, embedding size, index kind and parameters). Query it with "
        "`gluon-triplet search INDEX_DIR --query ...`.",
    )
    add_inference_flags(p, split="train")
    p.add_argument("--out", required=True, metavar="INDEX_DIR", help="new directory to write")
    p.add_argument(
        "--index",
        choices=("flat", "hnsw", "ivf"),
        default="flat",
        help="flat: exact search (default); hnsw or ivf: approximate, for large sets",
    )
    params = "; ".join(
        f"{kind}: {', '.join(f'{k}={v}' for k, v in d.items())}"
        for kind, d in DEFAULT_PARAMS.items()
        if d
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"an index parameter, repeatable (defaults: {params}; None = from the size)",
    )
    add_common_flags(p)
    return p


def _parse_params(items: Sequence[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip().replace("-", "_")] = int(value)
        except ValueError:
            raise ValueError(f"--param must be KEY=INTEGER, got {item!r}") from None
    return out


def _index(args: argparse.Namespace) -> None:
    from ..io import sha256_file
    from ..runs.rundir import RunDir
    from ..search.index import Index, metric_for_distance
    from ..search.items import absolute_spec

    check_new_path(args.out, "--out")
    params = _parse_params(args.param)
    net, config, (data,) = load_for_inference(args, args.dataset)
    x, y = data.split(args.split)
    params_file = RunDir.open(args.run_dir).params_path(args.params)
    emb = embed_checked(net, x, config, args.run_dir)
    info = {
        "run_dir": os.path.abspath(args.run_dir),
        "params": args.params,
        "params_file": os.path.basename(params_file),
        "params_sha256": sha256_file(params_file),
        "dataset": data.name,
        # the same data from any directory (serve reads item pictures only inside it)
        "dataset_path": absolute_spec(data.name),
        "data_dir": args.data_dir or (config.data_dir if args.dataset is None else None),
        "split": args.split,
        "sample_shape": [int(s) for s in x.shape[1:]],
    }
    index = Index.from_embeddings(
        emb,
        y,
        class_names=data.class_names,
        paths=data.split_paths(args.split),
        kind=args.index,
        metric=metric_for_distance(config.distance),
        info=info,
        **params,
    )
    index.save(args.out)
    settings = ", ".join(f"{k}={v}" for k, v in index.params.items())
    print(
        f"indexed {len(index)} {args.split} samples of {data.name} with {args.run_dir} "
        f"({args.params}): {index.kind}{f' ({settings})' if settings else ''}, "
        f"{index.metric}, {index.dim}-d, built in {index.info['build_seconds']:.2f}s -> {args.out}",
        flush=True,
    )


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet index ...``; returns the exit status."""
    return run_command(build_parser(), _index, argv)
