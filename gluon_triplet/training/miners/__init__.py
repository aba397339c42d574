"""Online triplet miners: choose triplets inside a batch from one forward pass.

A miner reads the ``(B, D)`` embeddings and ``(B,)`` labels and returns *indices* of
anchor, positive and negative rows plus a 0/1 weight per triplet, ``M`` rows for a batch
of ``B`` whatever the labels; :func:`mined_loss` gathers the rows and applies the loss.
:meth:`Miner.mine` runs imperatively, :meth:`Miner.select` inside a hybridized graph.

Examples
--------
>>> miner = get_miner("batch-hard", margin=1.0)
>>> loss_fn = gluon.loss.TripletLoss(margin=1.0)
>>> with autograd.record():
...     emb = net(x)                                   # (B, D)
...     a, p, n, w = miner.mine(emb, labels)           # labels: (B,) NDArray
...     loss = mined_loss(loss_fn, emb, a, p, n, w)    # scalar: mean over the selected
>>> loss.backward()
>>> trainer.step(1)                                    # the loss is already a mean
"""

from typing import TYPE_CHECKING

from ..._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".base": ("Miner",),
        ".batch_hard": ("BatchHardMiner",),
        ".semi_hard": ("SemiHardMiner",),
        ".batch_all": ("BatchAllMiner",),
        ".distance_weighted": ("DistanceWeightedMiner", "distance_weights"),
        ".registry": ("MINERS", "get_miner"),
        ".loss": ("mined_loss",),
    },
)

if TYPE_CHECKING:
    from .base import Miner
    from .batch_all import BatchAllMiner
    from .batch_hard import BatchHardMiner
    from .distance_weighted import DistanceWeightedMiner, distance_weights
    from .loss import mined_loss
    from .registry import MINERS, get_miner
