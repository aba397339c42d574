"""The miners' names where they were first defined, for code that imports them from here
(the trainer, user scripts); each miner now lives in its own module of :mod:`.miners`."""

from __future__ import annotations

from .distances import METRICS, pairwise_distances
from .miners.base import Miner
from .miners.batch_all import BatchAllMiner
from .miners.batch_hard import BatchHardMiner
from .miners.distance_weighted import DistanceWeightedMiner, distance_weights
from .miners.loss import mined_loss
from .miners.registry import MINERS, get_miner
from .miners.semi_hard import SemiHardMiner

__all__ = [
    "METRICS",
    "MINERS",
    "BatchAllMiner",
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "Miner",
    "SemiHardMiner",
    "distance_weights",
    "get_miner",
    "mined_loss",
    "pairwise_distances",
]
