"""A trained run from Python: rebuild its net (:func:`load_run`) and score embeddings
(:func:`evaluate`) as training does."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..config import Config
from ..data.triplets import create_pairs
from ..evaluation.clustering import clustering_metrics
from ..evaluation.metrics import evaluate_embeddings
from ..evaluation.retrieval import per_class_precision_at_1
from ..nets.architectures import legacy_cnn_architecture
from ..nets.zoo import model_from_config
from ..resources import error_line
from .rundir import RunDir

__all__ = ["evaluate", "load_run"]


def _model_of(
    config: Config, recorded: Dict[str, Any], params_file: str
) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The model and CNN architecture a run trained. A config.json that keeps model
    ``"auto"`` (saved from Python) is read from the parameters: only the CNN has 4-D
    weights, built by :func:`legacy_cnn_architecture` (strided without a sample shape)."""
    if config.model != "auto":
        return config.model, config.architecture
    arrays = mx.nd.load(params_file)
    values = arrays.values() if isinstance(arrays, dict) else arrays
    if not any(a.ndim == 4 for a in values):
        return "mlp", None
    settings = dict(recorded)
    if config.input_shape is None and settings.get("conv_block") in (None, "auto"):
        settings["conv_block"] = "strided"
    return "cnn", legacy_cnn_architecture(settings, config.input_shape or (28, 28))


def load_run(
    run_dir: str, params: str = "best", ctx: Optional[mx.Context] = None
) -> Tuple[gluon.HybridBlock, Config]:
    """Rebuild a trained run's embedding net from its directory.

    Parameters
    ----------
    run_dir : str
        A run directory written by training (``config.json`` plus ``*.params``).
    params : {"best", "last"} or str
        Which parameters; see :meth:`RunDir.params_path`.
    ctx : mx.Context, optional
        Where to load the net (default: the CPU).

    Returns
    -------
    net : gluon.HybridBlock
        Hybridized, ready for :func:`embed`: ``(N, ...) -> (N, config.embedding_size)``.
    config : Config
        The run's resolved configuration.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is missing, is not a run directory, or lacks the parameter file.
    ConfigError
        ``config.json`` is invalid.
    """
    run = RunDir.open(run_dir)
    config, recorded = run.load_recorded()  # a ConfigError names the file
    path = run.params_path(params)
    ctx = ctx or mx.cpu()
    try:  # the run's parameters replace any pretrained weights: never read those
        model, architecture = _model_of(config, recorded, path)
        rebuilt = dataclasses.replace(
            config,
            model=model,
            architecture=architecture,
            pretrained=False,
            pretrained_params=None,
        )
        net, _ = model_from_config(rebuilt, None, ctx=ctx)
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError) as e:  # Gluon asserts on a mismatch
        raise ValueError(
            f"cannot load {path} into the model of {run.config_path}: {error_line(e)}"
        ) from None
    net.hybridize()
    return net, config


def evaluate(
    emb: Any,
    labels: Any,
    margin: float = 1.0,
    seed: int = 0,
    triplets: Any = "balanced",
    per_class: bool = False,
    clustering: bool = False,
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The metrics training reports, for any embedding and labels.

    Parameters
    ----------
    emb : (N, D) array
    labels : (N,) labels
    margin : float
        The ``TripletLoss`` margin, for ``active_fraction`` (a run's ``config.margin``).
    seed : int
        Seed of the balanced test triples (a run's ``config.seed`` reproduces its numbers).
    triplets : "balanced", None or (anchor_idx, positive_idx, negative_idx)
        ``"balanced"``: :func:`~gluon_triplet.data.triplets.create_pairs`' triples, as
        training evaluates; None: retrieval metrics only.
    per_class : bool
        Add ``per_class_precision_at_1`` (class name or label -> P@1).
    clustering : bool
        Add ``nmi`` and ``ami`` of k-means clusters seeded with ``seed``.
    class_names : sequence of str, optional
        The names of integer labels ``0, 1, ...``, for ``per_class_precision_at_1``.

    Returns
    -------
    dict
        As :func:`~gluon_triplet.evaluation.metrics.evaluate_embeddings`: ``precision_at_1``,
        ``recall_at_k``, ``map_at_r``, ``embedding_norm``, ``triplet_accuracy``, ...
    """
    y = labels.asnumpy() if hasattr(labels, "asnumpy") else np.asarray(labels)
    if isinstance(triplets, str):
        if triplets != "balanced":
            raise ValueError(f"triplets must be 'balanced', None or index arrays, got {triplets!r}")
        triplets = create_pairs(y, seed=seed, warn=False)
    result: Dict[str, Any] = dict(evaluate_embeddings(emb, y, triplets=triplets, margin=margin))
    if per_class:
        per_class_p1 = per_class_precision_at_1(emb, y, class_names=class_names)
        result["per_class_precision_at_1"] = per_class_p1
    if clustering:
        result.update(clustering_metrics(emb, y, seed=seed))
    return result
