"""gluon-triplet: learn embeddings with triplet loss in MXNet Gluon.

Importing the package before MXNet sets two OpenMP variables when they are unset:
``OMP_NUM_THREADS`` to the number of usable CPUs (MXNet's default is half the logical
CPUs), and ``OMP_WAIT_POLICY=PASSIVE`` unless ``GOMP_SPINCOUNT`` is set (waiting threads
sleep instead of spinning, so that decoding workers and other jobs are not starved).
"""

import os as _os
import sys as _sys

if "mxnet" not in _sys.modules:
    if "OMP_NUM_THREADS" not in _os.environ:
        _cpus = (
            len(_os.sched_getaffinity(0)) if hasattr(_os, "sched_getaffinity") else _os.cpu_count()
        )
        _os.environ["OMP_NUM_THREADS"] = str(_cpus or 1)
    if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
        _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from . import errors as _errors
from ._lazy import attach as _attach
from .errors import *  # noqa: F403 (a leaf module: the errors are always loaded)

# The public API: module -> names. Each module is imported when one of its names is first
# read, so importing the package costs no MXNet.
_EXPORTS = {
    ".config": ("Config", "PRESETS"),
    ".data.datasets": ("DataBundle", "load_dataset"),
    ".data.idx": ("read_idx", "write_idx"),
    ".data.decoding": ("ImageOptions", "MAX_PIXELS", "check_pixels", "picture_size"),
    ".data.folder": ("scan_folder",),
    ".data.recordio": ("pack_folder",),
    ".data.samplers": ("PKBatchSampler",),
    ".data.triplets": ("TripletDataset", "create_pairs", "encode_labels"),
    ".data.validation": ("ValidationSplit", "carve_validation"),
    ".evaluation.clustering": ("ami", "clustering_metrics", "nmi"),
    ".evaluation.metrics": ("evaluate_embeddings", "strict_triplet_accuracy", "triplet_distances"),
    ".evaluation.retrieval": (
        "gallery_retrieval_metrics",
        "per_class_precision_at_1",
        "retrieval_metrics",
    ),
    ".nets.export": ("export_model",),
    ".nets.architectures": ("ARCHITECTURES", "BACKBONES"),
    ".nets.backbones": ("BackboneEmbedding",),
    ".nets.cnn": ("EmbeddingCNN",),
    ".nets.embed": ("embed",),
    ".nets.mlp": ("EmbeddingMLP",),
    ".nets.preprocess": ("preprocess", "preprocess_spec"),
    ".nets.zoo": ("MODELS", "build_model", "model_from_config"),
    ".runs.api": ("evaluate", "load_run"),
    ".runs.board": ("BoardCallback", "write_projector"),
    ".runs.checkpoint": ("load_checkpoint", "save_checkpoint"),
    ".runs.pictures": ("PlotCallback",),
    ".runs.rundir": ("RunDir",),
    ".search.index": ("Index",),
    ".search.serve": ("create_app",),
    ".training.averaging": ("WeightAverage", "average_decay"),
    ".training.batching": ("BatchStrategy", "OfflineTriplets", "OnlineMining", "make_strategy"),
    ".training.callbacks": (
        "Callback",
        "CheckpointCallback",
        "CollapseCallback",
        "MetricsCallback",
        "ProgressCallback",
        "best_record",
    ),
    ".training.collapse": ("CollapseGuard",),
    ".training.distances": ("Distance", "get_distance", "pairwise_distances"),
    ".training.losses": ("DistanceTripletLoss", "SoftMarginTripletLoss", "triplet_loss"),
    ".training.miners": (
        "BatchAllMiner",
        "BatchHardMiner",
        "DistanceWeightedMiner",
        "MINERS",
        "Miner",
        "SemiHardMiner",
        "distance_weights",
        "get_miner",
        "mined_loss",
    ),
    ".training.schedule": ("make_lr_scheduler",),
    ".training.trainer": ("TripletTrainer", "create_kvstore", "resolve_contexts", "set_seed"),
}

__getattr__, __dir__, _names = _attach(__name__, _EXPORTS)
__all__ = ["__version__", *_names, *_errors.__all__]

if TYPE_CHECKING:  # what a type checker and an IDE see
    from .config import PRESETS, Config
    from .data.datasets import DataBundle, load_dataset
    from .data.decoding import MAX_PIXELS, ImageOptions, check_pixels, picture_size
    from .data.folder import scan_folder
    from .data.idx import read_idx, write_idx
    from .data.recordio import pack_folder
    from .data.samplers import PKBatchSampler
    from .data.triplets import TripletDataset, create_pairs, encode_labels
    from .data.validation import ValidationSplit, carve_validation
    from .evaluation.clustering import ami, clustering_metrics, nmi
    from .evaluation.metrics import evaluate_embeddings, strict_triplet_accuracy, triplet_distances
    from .evaluation.retrieval import (
        gallery_retrieval_metrics,
        per_class_precision_at_1,
        retrieval_metrics,
    )
    from .nets.architectures import ARCHITECTURES, BACKBONES
    from .nets.backbones import BackboneEmbedding
    from .nets.cnn import EmbeddingCNN
    from .nets.embed import embed
    from .nets.export import export_model
    from .nets.mlp import EmbeddingMLP
    from .nets.preprocess import preprocess, preprocess_spec
    from .nets.zoo import MODELS, build_model, model_from_config
    from .runs.api import evaluate, load_run
    from .runs.board import BoardCallback, write_projector
    from .runs.checkpoint import load_checkpoint, save_checkpoint
    from .runs.pictures import PlotCallback
    from .runs.rundir import RunDir
    from .search.index import Index
    from .search.serve import create_app
    from .training.averaging import WeightAverage, average_decay
    from .training.batching import BatchStrategy, OfflineTriplets, OnlineMining, make_strategy
    from .training.callbacks import (
        Callback,
        CheckpointCallback,
        CollapseCallback,
        MetricsCallback,
        ProgressCallback,
        best_record,
    )
    from .training.collapse import CollapseGuard
    from .training.distances import Distance, get_distance, pairwise_distances
    from .training.losses import DistanceTripletLoss, SoftMarginTripletLoss, triplet_loss
    from .training.miners import (
        MINERS,
        BatchAllMiner,
        BatchHardMiner,
        DistanceWeightedMiner,
        Miner,
        SemiHardMiner,
        distance_weights,
        get_miner,
        mined_loss,
    )
    from .training.schedule import make_lr_scheduler
    from .training.trainer import TripletTrainer, create_kvstore, resolve_contexts, set_seed
