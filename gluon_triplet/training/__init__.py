"""Training with triplet loss: distances, losses, online miners, how a batch becomes
triplets, the trainer's loop, the learning-rate schedule, weight averaging and the
callbacks the loop calls."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".distances": ("DISTANCES", "Distance", "get_distance"),
        ".losses": ("DistanceTripletLoss", "SoftMarginTripletLoss", "triplet_loss"),
        ".mining": (
            "MINERS",
            "BatchAllMiner",
            "BatchHardMiner",
            "DistanceWeightedMiner",
            "Miner",
            "SemiHardMiner",
            "get_miner",
            "mined_loss",
            "pairwise_distances",
        ),
        ".batching": ("BatchStrategy", "OfflineTriplets", "OnlineMining", "make_strategy"),
        ".trainer": ("TripletTrainer", "create_kvstore", "resolve_contexts", "set_seed"),
        ".schedule": ("make_lr_scheduler",),
        ".averaging": ("WeightAverage", "average_decay"),
        ".callbacks": (
            "Callback",
            "CheckpointCallback",
            "CollapseCallback",
            "MetricsCallback",
            "ProgressCallback",
            "best_record",
        ),
        ".collapse": ("CollapseGuard",),
    },
)

if TYPE_CHECKING:
    from .averaging import WeightAverage, average_decay
    from .batching import BatchStrategy, OfflineTriplets, OnlineMining, make_strategy
    from .callbacks import (
        Callback,
        CheckpointCallback,
        CollapseCallback,
        MetricsCallback,
        ProgressCallback,
        best_record,
    )
    from .collapse import CollapseGuard
    from .distances import DISTANCES, Distance, get_distance
    from .losses import DistanceTripletLoss, SoftMarginTripletLoss, triplet_loss
    from .mining import (
        MINERS,
        BatchAllMiner,
        BatchHardMiner,
        DistanceWeightedMiner,
        Miner,
        SemiHardMiner,
        get_miner,
        mined_loss,
        pairwise_distances,
    )
    from .schedule import make_lr_scheduler
    from .trainer import TripletTrainer, create_kvstore, resolve_contexts, set_seed
