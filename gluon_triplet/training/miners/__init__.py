"""Online triplet miners: choose triplets inside a batch from one forward pass.

One module per miner (``batch_hard``, ``semi_hard``, ``batch_all``,
``distance_weighted``) on a shared base (``base``: :class:`Miner`; ``selection``: the
searches and the sampling they share); ``registry`` names them, ``loss`` holds
:func:`mined_loss`.

The batch goes through the net once; a miner reads the ``(B, D)`` embeddings and the
``(B,)`` labels and returns *indices* of anchor, positive and negative rows plus a 0/1
weight per triplet. :func:`mined_loss` gathers those rows and applies
``gluon.loss.TripletLoss``. As in pytorch-metric-learning, miners only mine: the loss
stays a separate, ordinary Gluon loss.

Everything runs on the embeddings' context with NDArray operations (no per-anchor Python
loop, no copy to the host), and every miner returns arrays whose length ``M`` depends
only on the batch size ``B``, so a training loop built around them keeps fixed shapes.
The selection is written once for ``mx.nd`` and ``mx.sym``: :meth:`Miner.mine` runs it
imperatively, :meth:`Miner.select` inside a hybridized graph (the trainer's step, where
its small operations then cost no Python call each).

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
