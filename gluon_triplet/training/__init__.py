"""Training with triplet loss: distances, losses, online miners (the ``miners``
subpackage), how a batch becomes triplets, the trainer's loop, the learning-rate
schedule, weight averaging and the callbacks the loop calls."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".distances": ("DISTANCES", "Distance", "get_distance", "pairwise_distances"),
        ".losses": ("DistanceTripletLoss", "SoftMarginTripletLoss", "triplet_loss"),
        ".miners": (
            "MINERS",
            "BatchAllMiner",
            "BatchHardMiner",
            "DistanceWeightedMiner",
            "Miner",
            "SemiHardMiner",
            "get_miner",
            "mined_loss",
        ),
        ".batching": ("BatchStrategy", "OfflineTriplets", "OnlineMining", "make_strategy"),
        ".trainer": ("TripletTrainer",),
        ".devices": ("create_kvstore", "resolve_contexts", "set_seed"),
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
    from .devices import create_kvstore, resolve_contexts, set_seed
    from .distances import DISTANCES, Distance, get_distance, pairwise_distances
    from .losses import DistanceTripletLoss, SoftMarginTripletLoss, triplet_loss
    from .miners import (
        MINERS,
        BatchAllMiner,
        BatchHardMiner,
        DistanceWeightedMiner,
        Miner,
        SemiHardMiner,
        get_miner,
        mined_loss,
    )
    from .schedule import make_lr_scheduler
    from .trainer import TripletTrainer
