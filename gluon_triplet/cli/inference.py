"""What the subcommands that use a trained run share (``embed``, ``evaluate``): their
flags, loading the run's net with the data the flags ask for, and a checked embedding."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..resources import mxnet_reason
from ..runs.rundir import RunDir
from .common import add_run_flags, add_split_flag

__all__ = ["add_inference_flags", "embed_checked", "load_for_inference"]

logger = logging.getLogger("gluon_triplet")


def add_inference_flags(p: argparse.ArgumentParser, split: str = "test") -> None:
    """``RUN_DIR``, ``--params``, ``--data-dir``, ``--dataset``, ``--split``, ``--ctx``."""
    add_run_flags(p)
    p.add_argument("--dataset", help="dataset spec as for training (default: the run's own)")
    add_split_flag(p, default=split)
    p.add_argument(
        "--ctx", default="cpu", help="context to run the net on, e.g. cpu or gpu:0 (default: cpu)"
    )


def load_for_inference(
    args: argparse.Namespace, *datasets: Optional[str]
) -> Tuple[Any, Any, List[Any]]:
    """The run's net and config and each dataset named (None: the run's own, never
    downloaded), loaded before the net so that a bad one costs no MXNet parameters:
    ``(net, config, [data, ...])``."""
    from ..data.datasets import load_dataset
    from ..data.decoding import ImageOptions
    from ..runs.api import load_run
    from ..training.trainer import resolve_contexts

    run = RunDir.open(args.run_dir)
    run.params_path(args.params)
    ctx = resolve_contexts(args.ctx)[0]
    config = run.load_config()
    # Pictures are decoded to the run's recorded size and channels, whatever the source.
    images = ImageOptions.from_config(config)
    loaded: Dict[Optional[str], Any] = {}
    for spec in datasets:
        if spec not in loaded:
            name = _trained_on(run, config) if spec is None else spec
            data_dir = args.data_dir or (config.data_dir if spec is None else None)
            loaded[spec] = load_dataset(
                name, data_dir, logger=logger, images=images, download=spec is not None
            )
    net, config = load_run(run.path, params=args.params, ctx=ctx)
    return net, config, [loaded[spec] for spec in datasets]


def _trained_on(run: RunDir, config: Any) -> str:
    """The dataset a run trained on: ``config.dataset``, unless ``metrics.json`` records
    mnist-5k (older versions recorded ``mnist`` after falling back to mnist-5k)."""
    try:
        with open(run.metrics_path, encoding="utf-8") as f:
            name = json.load(f)["dataset"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return config.dataset
    return name if name == "mnist-5k" and config.dataset == "mnist" else config.dataset


def embed_checked(net: Any, x: np.ndarray, config: Any, run_dir: str) -> np.ndarray:
    """``embed``, with a shape mismatch reported as one line instead of MXNet's trace."""
    import mxnet as mx

    from ..data.streaming import shared_pool
    from ..nets.embed import embed

    try:
        embed(net, x[:1], ctx=None)
    except mx.base.MXNetError as e:
        first = mxnet_reason(e)
        raise ValueError(
            f"samples of shape {tuple(x.shape[1:])} do not fit the model of {run_dir} "
            f"({config.model}): {first}"
        ) from None
    with shared_pool(x):  # streamed pictures: one pool of workers for every chunk
        return embed(net, x, batch_size=config.eval_batch_size, desc="embedding")
