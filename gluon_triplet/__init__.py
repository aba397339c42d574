"""gluon-triplet: learn embeddings with triplet loss in MXNet Gluon.

Importing the package, when MXNet is not imported yet, sets two OpenMP variables that are
unset (set them yourself to choose):

* ``OMP_NUM_THREADS`` to the number of usable CPUs: MXNet otherwise runs OpenMP on half the
  logical CPUs (it assumes hyper-threading), which halves training speed on small VMs.
* ``OMP_WAIT_POLICY=PASSIVE`` (unless ``GOMP_SPINCOUNT`` is set): an OpenMP thread that
  waits for its team then sleeps at once instead of spinning for about 3 ms first (GNU
  OpenMP's default). With one thread per CPU, any other runnable thread (a streamed run's
  decoding worker, another job) can leave two of the team on one CPU, and each then spins
  through its time slice while the thread it waits for cannot run: a streamed epoch was
  measured 3-6x slower than the same epoch with sleeping waits (docs/images.md).
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

from .api import evaluate
from .api import load_run
from .averaging import WeightAverage
from .averaging import average_decay
from .batching import BatchStrategy
from .batching import OfflineTriplets
from .batching import OnlineMining
from .batching import make_strategy
from .board import BoardCallback
from .board import write_projector
from .callbacks import Callback
from .callbacks import CheckpointCallback
from .callbacks import CollapseCallback
from .callbacks import MetricsCallback
from .callbacks import ProgressCallback
from .checkpoint import CheckpointError
from .checkpoint import load_checkpoint
from .checkpoint import save_checkpoint
from .config import PRESETS
from .config import Config
from .data import DataBundle
from .distances import Distance
from .distances import get_distance
from .data import DataError
from .data import load_dataset
from .data import read_idx
from .data import write_idx
from .images import ImageOptions
from .images import pack_folder
from .images import scan_folder
from .export import ExportError
from .export import export_model
from .index import Index
from .index import IndexFileError
from .metrics import ami
from .metrics import clustering_metrics
from .losses import DistanceTripletLoss
from .losses import triplet_loss
from .metrics import evaluate_embeddings
from .metrics import gallery_retrieval_metrics
from .metrics import nmi
from .metrics import per_class_precision_at_1
from .metrics import retrieval_metrics
from .metrics import strict_triplet_accuracy
from .metrics import triplet_distances
from .losses import SoftMarginTripletLoss
from .model import BACKBONES
from .model import MODELS
from .model import BackboneEmbedding
from .mining import MINERS
from .mining import BatchAllMiner
from .mining import BatchHardMiner
from .mining import DistanceWeightedMiner
from .mining import Miner
from .mining import SemiHardMiner
from .mining import distance_weights
from .mining import get_miner
from .mining import mined_loss
from .mining import pairwise_distances
from .model import EmbeddingCNN
from .model import EmbeddingMLP
from .model import build_model
from .model import embed
from .model import model_from_config
from .plots import PlotCallback
from .schedule import make_lr_scheduler
from .rundir import RunDir
from .rundir import RunDirInUse
from .samplers import PKBatchSampler
from .train import TripletTrainer
from .train import create_kvstore
from .train import resolve_contexts
from .train import set_seed
from .triplets import TripletDataset
from .triplets import create_pairs
from .triplets import encode_labels

__all__ = [
    "DistanceWeightedMiner",
    "SoftMarginTripletLoss",
    "distance_weights",
    "make_lr_scheduler",
    "WeightAverage",
    "average_decay",
    "BatchStrategy",
    "Distance",
    "DistanceTripletLoss",
    "OfflineTriplets",
    "OnlineMining",
    "PKBatchSampler",
    "RunDir",
    "RunDirInUse",
    "get_distance",
    "make_strategy",
    "triplet_loss",
    "model_from_config",
    "EmbeddingCNN",
    "pairwise_distances",
    "mined_loss",
    "get_miner",
    "SemiHardMiner",
    "Miner",
    "BatchHardMiner",
    "BatchAllMiner",
    "MINERS",
    "PRESETS",
    "BoardCallback",
    "Callback",
    "CheckpointCallback",
    "CheckpointError",
    "CollapseCallback",
    "Config",
    "DataBundle",
    "DataError",
    "ExportError",
    "Index",
    "IndexFileError",
    "EmbeddingMLP",
    "MODELS",
    "BACKBONES",
    "BackboneEmbedding",
    "MetricsCallback",
    "PlotCallback",
    "ProgressCallback",
    "TripletDataset",
    "TripletTrainer",
    "__version__",
    "ami",
    "clustering_metrics",
    "export_model",
    "gallery_retrieval_metrics",
    "nmi",
    "build_model",
    "create_kvstore",
    "create_pairs",
    "embed",
    "encode_labels",
    "evaluate",
    "evaluate_embeddings",
    "load_dataset",
    "load_checkpoint",
    "load_run",
    "per_class_precision_at_1",
    "read_idx",
    "resolve_contexts",
    "retrieval_metrics",
    "save_checkpoint",
    "set_seed",
    "strict_triplet_accuracy",
    "triplet_distances",
    "write_idx",
    "ImageOptions",
    "pack_folder",
    "scan_folder",
    "write_projector",
]
