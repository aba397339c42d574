"""Where a training step's triplets come from: offline triples, or P x K batches mined online.

A :class:`BatchStrategy` gives the loop an epoch's batches (shared out among the workers of
a distributed job), the hybridized step graph (gather, net, mining, loss, loss statistics),
the divisor of the summed gradients and the random generators a checkpoint holds;
:func:`make_strategy` picks one by ``config.miner``.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from ..config import Config
from ..data.augment import make_augmenter
from ..data.samplers import PKBatchSampler, resolve_p
from ..data.streaming import BatchFeed
from ..data.triplets import TripletDataset
from ..errors import ConfigError
from .distances import get_distance
from .losses import triplet_loss_from_config
from .miners.base import _in_blocks
from .miners.registry import get_miner

__all__ = [
    "BatchStrategy",
    "MinedStep",
    "OfflineTriplets",
    "OnlineMining",
    "TripletStep",
    "check_batch_fits",
    "default_pk_classes",
    "make_strategy",
]


class TripletStep(gluon.HybridBlock):
    """Gather + embed + triplet loss as one graph (the gathered batch's memory is
    allocated once).

    Inputs: ``data`` ``(N, ...)`` float32 (all training samples, on this context) and
    ``idx`` ``(B, 3)`` int32 rows ``anchor, positive, negative``. Outputs: the ``(B,)``
    loss and its statistics, ``(3,)`` float32 (see :func:`loss_sums`).
    """

    def __init__(self, net, loss_fn, augment=None, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.loss_fn = loss_fn
        self.augment = augment

    def hybrid_forward(self, F, data, idx):
        flat = F.reshape(F.transpose(idx), shape=(-1,))  # anchors, positives, negatives
        batch = F.take(data, flat)
        if self.augment is not None:
            batch = self.augment(batch)
        emb = self.net(batch)
        a, p, n = F.split(emb, num_outputs=3, axis=0)
        loss = self.loss_fn(a, p, n)
        return loss, F.BlockGrad(loss_sums(F, loss, F.ones_like(loss)))


class MinedStep(gluon.HybridBlock):
    """Gather + embed + mine + loss as one graph, for online mining: the miner's
    :meth:`~gluon_triplet.training.miners.base.Miner.select` runs on the embeddings cut
    from the gradient, equal to the bit to ``Miner.mine`` + ``mined_loss``.

    Inputs: ``data`` ``(N, ...)`` float32 and ``labels`` ``(N,)`` float32 (all samples on
    this context), ``idx`` ``(B,)`` int32 (the slice of a P x K batch). Outputs: the mean
    loss over the mined triplets ``(1,)`` (0 when there are none), and the statistics
    ``(3,)`` float32 of the weighted per-triplet loss (see :func:`loss_sums`).

    Parameters
    ----------
    net : gluon.HybridBlock
    miner : Miner
    loss_fn : gluon.loss.Loss
        Called as ``loss_fn(anchor, positive, negative) -> (M,)``.
    batch_size : int
        ``B``: the selection's arrays are sized by it, so one step serves one slice size.
    augment : gluon.HybridBlock, optional
    block : int, optional
        The slices are blocks of ``block`` rows sharing a label, distinct between blocks
        (whole classes of a P x K batch): the miner may list pairs from that layout
        (:meth:`~gluon_triplet.training.miners.base.Miner.select`); the caller guarantees it.
    """

    def __init__(self, net, miner, loss_fn, batch_size, augment=None, block=None, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.loss_fn = loss_fn
        self.augment = augment
        self.miner = miner
        self.batch_size = int(batch_size)
        self.block = block

    def hybrid_forward(self, F, data, labels, idx):
        batch = F.take(data, idx)
        if self.augment is not None:
            batch = self.augment(batch)
        emb = self.net(batch)
        a, p, n, weight = self.miner.select(
            F, F.BlockGrad(emb), F.take(labels, idx), self.batch_size, self.block
        )
        loss = self.loss_fn(F.take(emb, a), F.take(emb, p), F.take(emb, n)) * weight
        sums = loss_sums(F, loss, weight)
        # Mean over the mined triplets of the slice; a slice with none gives 0.
        total = F.slice_axis(sums, axis=0, begin=0, end=1)
        count = F.slice_axis(sums, axis=0, begin=2, end=3)
        return total / F.maximum(count, 1.0), F.BlockGrad(sums)


def loss_sums(F, loss, weight):
    """``(3,)`` float32: the summed loss, the number of active (> 0) triplets and the
    summed weight (triplets trained on), as one reduction of the three rows stacked."""
    return F.sum(F.stack(loss, loss > 0, weight, axis=0), axis=1)


def default_pk_classes(config: Config, num_classes: int) -> int:
    """P of the P x K batches: ``config.pk_classes``, by default every class up to 10."""
    return resolve_p(config.pk_classes, num_classes)


def check_batch_fits(config: Config, train_set: TripletDataset) -> None:
    """A batch must fit in the data: offline, ``batch_size`` triplets; online, ``P`` classes.

    Raises
    ------
    ConfigError
        Naming the flag and the largest value that fits.
    """
    if config.miner == "offline":
        if config.batch_size > len(train_set):
            raise ConfigError(
                f"--batch-size {config.batch_size} is larger than the {len(train_set)} "
                f"training triplets of an epoch; use --batch-size {len(train_set)} or less"
            )
    elif config.pk_classes is not None and config.pk_classes > len(train_set.classes):
        raise ConfigError(
            f"--pk-classes {config.pk_classes} asks for more classes per batch than the "
            f"training data has ({len(train_set.classes)}); use --pk-classes "
            f"{len(train_set.classes)} or less"
        )


class BatchStrategy:
    """The common part: the samples on every context, the loss, the worker's share.

    Parameters
    ----------
    net : gluon.HybridBlock
    train_set : TripletDataset
    config : Config
        Uses ``distance``, ``margin``, ``seed`` and the batch settings.
    contexts : list of mx.Context
    num_workers, rank : int
        The distributed job's size and this worker's rank (1 and 0 on one machine).
    """

    #: Batches per epoch for this worker.
    num_batches: int

    def __init__(
        self,
        net: gluon.HybridBlock,
        train_set: TripletDataset,
        config: Config,
        contexts: Sequence[mx.Context],
        num_workers: int = 1,
        rank: int = 0,
    ) -> None:
        self.train_set = train_set
        self.config = config
        self.contexts = list(contexts)
        self.num_workers = num_workers
        self.rank = rank
        self.distance = get_distance(config.distance)
        self.loss_fn = triplet_loss_from_config(config, self.distance)
        self.rng = np.random.default_rng(config.seed + 1)  # the batch order
        # The step gathers from data already in the net's layout (prepare_input).
        prepare = getattr(net, "prepare_input", lambda a: a)
        self.feed = BatchFeed(
            train_set.x, train_set.labels, self.contexts, prepare, workers=config.workers
        )
        prepared = prepare(np.zeros((1, *train_set.x.shape[1:]), np.float32)).shape[1:]
        self.augment = make_augmenter(config.augment, prepared)

    @property
    def data(self) -> List[nd.NDArray]:
        """The samples the step gathers from, one NDArray per context (see BatchFeed)."""
        return self.feed.data

    def epoch_batches(self, batches: nd.NDArray) -> Iterator[nd.NDArray]:
        """The epoch's batches as the step takes them (re-indexed into a streamed batch)."""
        return self.feed.epoch(batches)

    def begin_epoch(self, epoch: int) -> None:
        """Called before each epoch (counting from 1)."""

    def generators(self) -> Dict[str, np.random.Generator]:
        """The NumPy generators an epoch draws from, by the names a checkpoint keeps."""
        return {"batch_order": self.rng, "triplets": self.train_set._rng}

    def batches(self) -> nd.NDArray:
        """This epoch's batches for this worker, int32: ``(num_batches, ...)``."""
        raise NotImplementedError

    def forward(self, i: int, idx: nd.NDArray) -> Tuple[nd.NDArray, nd.NDArray]:
        """One batch slice ``idx`` on context ``i``, under ``autograd.record()``.

        Returns
        -------
        objective : NDArray
            What the context back-propagates.
        stats : (3,) NDArray float32
            Summed per-triplet loss, active triplets, triplets trained on (no gradient).
        """
        raise NotImplementedError

    def divisor(self, batch: nd.NDArray, parts: List[nd.NDArray]) -> int:
        """What ``gluon.Trainer.step`` divides this worker's summed gradients by."""
        raise NotImplementedError

    def probe_batches(self, n: int) -> nd.NDArray:
        """``n`` batches shaped like :meth:`batches`' rows, the same fixed rows every
        time, drawn from no generator (timing them changes no epoch)."""
        raise NotImplementedError

    def _share(self, batches: np.ndarray) -> nd.NDArray:
        """This worker's batches: batch ``rank`` of each group of ``num_workers``, where
        ``batches`` has been topped up to whole groups, on the context they are split from."""
        workers = self.num_workers
        batches = batches.reshape(-1, workers, *batches.shape[1:])[:, self.rank]
        home = self.contexts[0] if len(self.contexts) == 1 else mx.cpu()
        return nd.array(batches, ctx=home, dtype=np.int32)


class OfflineTriplets(BatchStrategy):
    """The class-balanced triples of ``train_set``, redrawn every epoch, in shuffled
    batches of ``config.batch_size`` (the last one topped up from the start of the order);
    gradients are divided by the batch size."""

    def __init__(self, net, train_set, config, contexts, num_workers=1, rank=0):
        super().__init__(net, train_set, config, contexts, num_workers, rank)
        self.step = TripletStep(net, self.loss_fn, self.augment)
        self.step.hybridize(static_alloc=True, static_shape=True)
        size = min(config.batch_size, len(train_set))
        self.num_batches = -(-len(train_set) // (size * num_workers))

    def begin_epoch(self, epoch):
        if epoch > 1:
            self.train_set.resample()

    def batches(self):
        triplets = self.train_set.triplets
        size = min(self.config.batch_size, len(triplets))
        order = self.rng.permutation(len(triplets))
        order = np.resize(order, len(order) + (-len(order) % (size * self.num_workers)))
        return self._share(triplets[order].astype(np.int32).reshape(-1, size, 3))

    def forward(self, i, idx):
        return self.step(self.data[i], idx)

    def divisor(self, batch, parts):
        return batch.shape[0]

    def probe_batches(self, n):
        triplets = self.train_set.triplets
        size = min(self.config.batch_size, len(triplets))
        row = np.resize(triplets, (size, 3)).astype(np.int32)
        return self._share(np.broadcast_to(row, (n * self.num_workers, size, 3)).copy())


class OnlineMining(BatchStrategy):
    """P x K batches (:class:`~gluon_triplet.data.samplers.PKBatchSampler`) go through the
    net once and the miner picks triplets inside each; with several contexts each mines its
    own slice and back-propagates the mean loss over its triplets."""

    def __init__(self, net, train_set, config, contexts, num_workers=1, rank=0):
        super().__init__(net, train_set, config, contexts, num_workers, rank)
        self.pk_classes = default_pk_classes(config, len(train_set.classes))
        self.miner = get_miner(
            config.miner,
            margin=config.margin,
            metric=self.distance,
            **_miner_options(config.miner, self.pk_classes, config.pk_samples),
        )
        self.sampler = PKBatchSampler(
            train_set.labels, self.pk_classes, config.pk_samples, seed=config.seed
        )
        self.net = net
        # One step graph per slice size (contexts may get slices of unequal sizes).
        self.steps: Dict[int, MinedStep] = {}
        self.num_batches = -(-len(self.sampler) // num_workers)
        # Slices of whole classes let the miner list pairs from the P x K layout.
        k = config.pk_samples
        cuts = np.cumsum(_slice_sizes(self.pk_classes * k, len(self.contexts)))
        self.block = k if (cuts % k == 0).all() else None

    def generators(self):
        return {**super().generators(), "pk_sampler": self.sampler._rng}

    def batches(self):
        batches = self.sampler.epoch_batches().astype(np.int32)
        if self.block is not None:
            _check_layout(self.train_set.labels[batches], self.block)
        groups = -(-len(batches) // self.num_workers)
        # np.resize repeats whole rows from the start: the group tops up cyclically.
        return self._share(np.resize(batches, (groups * self.num_workers, batches.shape[1])))

    def step_for(self, batch_size: int) -> MinedStep:
        """The hybridized step graph for slices of ``batch_size`` samples."""
        step = self.steps.get(batch_size)
        if step is None:
            step = MinedStep(
                self.net, self.miner, self.loss_fn, batch_size, self.augment, self.block
            )
            step.hybridize(static_alloc=True, static_shape=True)
            self.steps[batch_size] = step
        return step

    def forward(self, i, idx):
        return self.step_for(idx.shape[0])(self.data[i], self.feed.labels[i], idx)

    def divisor(self, batch, parts):
        return len(parts)

    def probe_batches(self, n):
        # The first K members (cyclically) of each of the first P classes, class by class.
        codes, k = self.sampler.labels, self.config.pk_samples
        row = np.concatenate(
            [np.resize(np.flatnonzero(codes == c), k) for c in range(self.pk_classes)]
        )
        return self._share(
            np.broadcast_to(row.astype(np.int32), (n * self.num_workers, len(row))).copy()
        )


def _slice_sizes(size: int, parts: int) -> List[int]:
    """The slice sizes ``gluon.utils.split_and_load(..., even_split=False)`` cuts."""
    each, extra = divmod(size, parts)
    return [each + 1] * extra + [each] * (parts - extra)


def _check_layout(labels: np.ndarray, k: int) -> None:
    """Every batch row of ``labels`` ``(num_batches, P * K)`` is P blocks of K equal
    labels, distinct between blocks: what the step's miner was told (a bug otherwise)."""
    if not _in_blocks(labels, k):
        raise RuntimeError("P x K batches are not whole blocks of distinct classes; this is a bug")


def _miner_options(miner: str, p: int, k: int) -> Dict[str, int]:
    """Fixed mined-batch sizes: a P x K batch has P*K*(K-1) positive pairs."""
    pairs = p * k * (k - 1)
    if miner in ("semi-hard", "distance-weighted"):
        return {"max_pairs": pairs}
    if miner == "batch-all":
        return {"max_triplets": pairs}
    return {}


def make_strategy(
    net: gluon.HybridBlock,
    train_set: TripletDataset,
    config: Config,
    contexts: Sequence[mx.Context],
    num_workers: int = 1,
    rank: int = 0,
) -> BatchStrategy:
    """:class:`OfflineTriplets` for ``config.miner == "offline"``, else :class:`OnlineMining`."""
    kind = OfflineTriplets if config.miner == "offline" else OnlineMining
    return kind(net, train_set, config, contexts, num_workers, rank)
