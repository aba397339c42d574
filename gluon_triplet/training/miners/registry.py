"""The miners by name: :data:`MINERS` and :func:`get_miner` (``"offline"``: no miner)."""

from __future__ import annotations

from .batch_all import BatchAllMiner
from .batch_hard import BatchHardMiner
from .distance_weighted import DistanceWeightedMiner
from .semi_hard import SemiHardMiner

__all__ = ["MINERS", "OFFLINE", "get_miner"]

MINERS = {
    "batch-hard": BatchHardMiner,
    "semi-hard": SemiHardMiner,
    "batch-all": BatchAllMiner,
    "distance-weighted": DistanceWeightedMiner,
}

# The trainer's name for "no online mining": offline triplets from TripletDataset.
OFFLINE = "offline"


def get_miner(name, margin=1.0, metric="squared", **kwargs):
    """Build a registered miner.

    Parameters
    ----------
    name : str
        A key of :data:`MINERS`, or ``"offline"`` (no miner: returns ``None``).
    margin : float
    metric : {"squared", "euclidean", "cosine"}
    **kwargs
        Passed to the miner (e.g. ``max_triplets`` for ``"batch-all"``).

    Returns
    -------
    Miner or None

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    if name == OFFLINE:
        return None
    if name not in MINERS:
        valid = ", ".join(sorted([*MINERS, OFFLINE]))
        raise ValueError(f"unknown miner {name!r}; choose one of: {valid}")
    return MINERS[name](margin=margin, metric=metric, **kwargs)
