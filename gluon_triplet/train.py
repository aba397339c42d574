"""The training loop: triplets in, a trained embedding net out. Knows nothing of logging."""

from __future__ import annotations

import atexit
import logging
import os
import random
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from .callbacks import CallbackList
from .losses import triplet_loss_from_config
from .metrics import clustering_metrics, evaluate_embeddings, per_class_precision_at_1
from .mining import get_miner
from .model import embed
from .schedule import make_lr_scheduler
from .triplets import PKBatchSampler

__all__ = [
    "DIST_KVSTORES",
    "EmbedStep",
    "TripletStep",
    "TripletTrainer",
    "create_kvstore",
    "resolve_contexts",
    "set_seed",
]

logger = logging.getLogger("gluon_triplet")

_NORM_SAMPLES = 2000


def set_seed(seed):
    """Seed every random source a run uses: Python, NumPy and MXNet."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the global RNG
    mx.random.seed(seed)


#: kvstore types that train over ps-lite: several worker processes, possibly on several hosts.
DIST_KVSTORES = ("dist_sync", "dist_device_sync", "dist_async")

# What a ps-lite process reads to find the job; gluon-triplet launch sets them all.
_DMLC_VARIABLES = (
    "DMLC_ROLE",
    "DMLC_PS_ROOT_URI",
    "DMLC_PS_ROOT_PORT",
    "DMLC_NUM_WORKER",
    "DMLC_NUM_SERVER",
)


def create_kvstore(kind):
    """The ps-lite kvstore of a distributed run, or None when training on one machine.

    ``dist_*`` kinds join the job the ``DMLC_*`` environment variables describe and block
    until every worker and server has joined. Other kinds (``device``, ``local``) give
    None: ``gluon.Trainer`` creates those itself, and only when there are several contexts.

    Parameters
    ----------
    kind : str
        ``config.kvstore``.

    Returns
    -------
    mx.kvstore.KVStore or None

    Raises
    ------
    ValueError
        A ``dist_*`` kind outside a ps-lite job, or a ps-lite worker with a local kind
        (it would train alone while the job waits for it forever).
    """
    role = os.environ.get("DMLC_ROLE")
    if kind not in DIST_KVSTORES:
        if role == "worker":
            raise ValueError(
                f"this process is a ps-lite worker (DMLC_ROLE=worker) but --kvstore is "
                f"{kind!r}; use one of {', '.join(DIST_KVSTORES)}"
            )
        return None
    missing = [name for name in _DMLC_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"--kvstore {kind} needs a ps-lite job, but these are not set: {', '.join(missing)}; "
            f"start one with: gluon-triplet launch -n WORKERS -s SERVERS -- --kvstore {kind} ..."
        )
    if role != "worker":
        raise ValueError(f"--kvstore {kind}: DMLC_ROLE is {role!r}; training runs as 'worker'")
    kvstore = mx.kv.create(kind)
    # Freeing a dist kvstore runs ps-lite's leaving handshake: rank 0 stops the servers, then
    # every worker waits for all the others. Freed on an error path, it would stop the
    # servers under the other workers or wait for them forever; held until the interpreter
    # exits, the handshake runs only when a process exits normally (a failed worker of
    # gluon-triplet launch leaves with os._exit instead).
    atexit.register(_release, kvstore)
    return kvstore


def _release(kvstore):
    """Called at interpreter exit; atexit drops its reference to ``kvstore`` afterwards."""


def resolve_contexts(spec="auto", num_gpus=None):
    """Turn ``auto | cpu | gpu | gpu:0,1 | cpu:0,1`` into a list of MXNet contexts.

    ``auto`` is every GPU MXNet sees, else the CPU.

    Parameters
    ----------
    spec : str
    num_gpus : int, optional
        Override ``mx.context.num_gpus()`` (for tests).

    Returns
    -------
    list of mx.Context
    """
    if num_gpus is None:
        num_gpus = mx.context.num_gpus()
    spec = spec.strip().lower()
    kind, _, ids = spec.partition(":")
    if kind == "auto" and not ids:
        return [mx.gpu(i) for i in range(num_gpus)] if num_gpus else [mx.cpu()]
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"bad --ctx {spec!r}; use auto, cpu, gpu, gpu:0,1 or cpu:0,1")
    try:
        devices = [int(i) for i in ids.split(",")] if ids else None
    except ValueError:
        raise ValueError(f"bad --ctx {spec!r}: device ids must be integers") from None
    if devices is not None and (not devices or len(set(devices)) != len(devices)):
        raise ValueError(f"bad --ctx {spec!r}: device ids must be distinct")
    if kind == "cpu":
        return [mx.cpu(i) for i in devices or [0]]
    if num_gpus == 0:
        raise ValueError(f"--ctx {spec}: no GPU visible to MXNet (mx.context.num_gpus() == 0)")
    devices = devices if devices is not None else list(range(num_gpus))
    missing = [i for i in devices if i >= num_gpus or i < 0]
    if missing:
        raise ValueError(f"--ctx {spec}: GPU {missing[0]} does not exist ({num_gpus} visible)")
    return [mx.gpu(i) for i in devices]


class TripletStep(gluon.HybridBlock):
    """Gather + embed + ``TripletLoss`` as one graph.

    Inside one hybridized, ``static_alloc`` graph, the gathered ``(3B, ...)`` batch lives
    in memory allocated once; an imperative ``nd.take`` would allocate (and page-fault) a
    fresh output every batch, which costs more than the gather itself.

    Inputs: ``data`` ``(N, ...)`` float32 (all training samples, on this context) and
    ``idx`` ``(B, 3)`` int32 rows ``anchor, positive, negative``. Output: ``(B,)`` loss.
    """

    def __init__(self, net, loss_fn, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.loss_fn = loss_fn

    def hybrid_forward(self, F, data, idx):
        flat = F.reshape(F.transpose(idx), shape=(-1,))  # anchors, positives, negatives
        emb = self.net(F.take(data, flat))
        a, p, n = F.split(emb, num_outputs=3, axis=0)
        return self.loss_fn(a, p, n)


class EmbedStep(gluon.HybridBlock):
    """Gather + embed as one graph, for online mining: ``(N, ...), (B,) -> (B, D)``."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, data, idx):
        return self.net(F.take(data, idx))


class TripletTrainer:
    """Trains an embedding net with ``gluon.loss.TripletLoss``.

    Two ways to get triplets, by ``config.miner``:

    ``offline`` (the reference recipe)
        The class-balanced triples of ``train_set`` (redrawn every epoch) in shuffled
        batches of ``config.batch_size``; anchors, positives and negatives are gathered with
        one ``take`` and go through the net as one ``(3B, ...)`` batch.
    ``batch-hard`` / ``semi-hard`` / ``batch-all``
        P x K batches (``config.pk_classes`` classes x ``config.pk_samples`` samples, see
        :class:`~gluon_triplet.triplets.PKBatchSampler`) go through the net once; the miner
        picks triplets from that batch's distance matrix and their embeddings are fed to
        ``TripletLoss``. With several contexts each one mines within its own slice.

    The training data sits on every context as one NDArray, and the loss is read back only
    every ``config.log_every`` batches, so the host does not wait on every step.

    With a ``dist_*`` kvstore every worker draws the same epoch (same seeds), cuts it into
    global batches of ``num_workers`` per-worker batches and trains on its own share, all
    workers the same number of batches; ``dist_sync`` thus takes the steps one process
    would take on global batches of ``num_workers * batch_size`` triplets (offline) or on
    ``num_workers`` P x K batches split over ``num_workers`` contexts (online). Only rank 0
    evaluates.

    Parameters
    ----------
    net : gluon.HybridBlock
        Initialised on ``contexts``.
    train_set : TripletDataset
        Supplies samples, labels and per-epoch triplets (:meth:`TripletDataset.resample`).
    config : Config
    contexts : list of mx.Context
        One replica per context; batches are split with ``gluon.utils.split_and_load``.
    test_x : (M, ...) float32, optional
        Evaluated after every epoch (and once before training, as epoch 0).
    test_y : (M,) labels, optional
    test_triplets : tuple of three (T,) int arrays, optional
        Fixed test triples for the strict triplet accuracy.
    callbacks : iterable of Callback
    kvstore : mx.kvstore.KVStore, optional
        The job's ``dist_*`` kvstore when the caller already made one (see
        :func:`create_kvstore`); by default it is created from ``config.kvstore``.
    """

    def __init__(
        self,
        net,
        train_set,
        config,
        contexts,
        test_x=None,
        test_y=None,
        test_triplets=None,
        callbacks=(),
        kvstore=None,
    ):
        self.net = net
        self.train_set = train_set
        self.config = config
        self.contexts = list(contexts)
        self.test_x = test_x
        self.test_y = test_y
        self.test_triplets = test_triplets
        self.callbacks = CallbackList(callbacks)
        self.history = []
        self.epoch = 0
        self.batch = 0
        self.running_loss = float("nan")
        self.stop_training = False
        self._rng = np.random.default_rng(config.seed + 1)
        self.kvstore = kvstore if kvstore is not None else create_kvstore(config.kvstore)
        self.rank = self.kvstore.rank if self.kvstore is not None else 0
        self.num_workers = self.kvstore.num_workers if self.kvstore is not None else 1
        if self.rank != 0:
            # Evaluation runs once, on rank 0.
            self.test_x = self.test_y = self.test_triplets = None
        # A dist_sync server sums the workers' gradients and updates once, so dividing by
        # the global batch makes n workers step like one process on their union; dist_async
        # applies every worker's push as an update of its own.
        asynchronous = self.kvstore is not None and "async" in self.kvstore.type
        self._grad_workers = 1 if asynchronous else self.num_workers

        self.loss_fn = triplet_loss_from_config(config)
        # Default P: every class in each batch, up to 10.
        self.pk_classes = config.pk_classes or min(10, len(train_set.classes))
        self.miner = get_miner(
            config.miner,
            margin=config.margin,
            metric=config.distance,
            **_miner_options(config.miner, self.pk_classes, config.pk_samples),
        )
        x = train_set.x.astype(np.float32, copy=False)
        # The gather runs inside the step's graph, so the data must already have the
        # layout the net wants (e.g. a channel axis for a CNN).
        x = getattr(net, "prepare_input", lambda a: a)(x)
        self._data = [nd.array(x, ctx=c, dtype=np.float32) for c in self.contexts]
        if self.miner is None:
            self.sampler = None
            self._step = TripletStep(net, self.loss_fn)
            size = min(config.batch_size, len(train_set))
            self.num_batches = -(-len(train_set) // (size * self.num_workers))
        else:
            self.sampler = PKBatchSampler(
                train_set.labels, self.pk_classes, config.pk_samples, seed=config.seed
            )
            self._labels = [
                nd.array(train_set.labels, ctx=c, dtype=np.float32) for c in self.contexts
            ]
            self._step = EmbedStep(net)
            self.num_batches = -(-len(self.sampler) // self.num_workers)
        self._step.hybridize(static_alloc=True, static_shape=True)

        optimizer_params = {"learning_rate": config.lr, "wd": config.weight_decay}
        if config.optimizer == "sgd":
            optimizer_params["momentum"] = config.momentum
        # Counted where the optimizer runs: async servers update once per push.
        scheduler = make_lr_scheduler(
            config, self.num_batches * (self.num_workers if asynchronous else 1)
        )
        if scheduler is not None:
            optimizer_params["lr_scheduler"] = scheduler
        kvstore = self.kvstore
        if kvstore is None and len(self.contexts) > 1:
            kvstore = config.kvstore  # gluon.Trainer creates it
        self.trainer = gluon.Trainer(
            net.collect_params(), config.optimizer, optimizer_params, kvstore=kvstore
        )

    def embed(self, x):
        """Embeddings of ``x`` by the current net: ``(N, ...) -> (N, D) float32`` numpy."""
        return embed(self.net, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0])

    def evaluate(self):
        """Metrics of the current net on the test split (see ``metrics.evaluate_embeddings``)."""
        if self.test_x is None:
            return {}
        emb = self.embed(self.test_x)
        result = evaluate_embeddings(
            emb, self.test_y, triplets=self.test_triplets, margin=self.config.margin
        )
        body = getattr(self.net, "body", None)
        if getattr(self.net, "normalize", False) and body is not None:
            # Collapse shows in the norm *before* normalisation (after it, every norm is
            # 1); a sample of the test set is enough for a mean.
            x = getattr(self.net, "prepare_input", lambda a: a)(self.test_x[:_NORM_SAMPLES])
            raw = embed(body, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0])
            result["raw_embedding_norm"] = float(np.linalg.norm(raw, axis=1).mean())
        return result

    def fit(self):
        """Train up to epoch ``config.epochs``; returns :attr:`history`.

        After :meth:`load_state_dict`, training continues with the epoch after the
        restored one, and its history is kept.
        """
        if not self.history:
            self.history.append({"epoch": 0, "time": 0.0, "train": {}, "test": self.evaluate()})
        self.callbacks.on_train_begin(self)
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            self.epoch = epoch
            # MXNet's RNG (the miners' sampling) cannot be saved, so each epoch reseeds it:
            # an epoch's randomness then depends only on state a checkpoint holds.
            mx.random.seed(_epoch_seed(self.config.seed, epoch))
            if epoch > 1 and self.miner is None:
                self.train_set.resample()
            start = time.perf_counter()
            self.callbacks.on_epoch_begin(self)
            train_stats = self._train_epoch()
            record = {
                "epoch": epoch,
                "time": time.perf_counter() - start,
                "train": train_stats,
                "test": self.evaluate(),
            }
            self.history.append(record)
            self.callbacks.on_epoch_end(self)
            if self.stop_training:
                break
        if self.test_x is not None:
            # Once, at the end: a per-class report costs another retrieval pass, and k-means
            # for NMI/AMI about a second on 10k test samples.
            emb = self.embed(self.test_x)
            final = self.history[-1]["test"]
            final["per_class_precision_at_1"] = per_class_precision_at_1(emb, self.test_y)
            final.update(clustering_metrics(emb, self.test_y, seed=self.config.seed))
        self.callbacks.on_train_end(self)
        return self.history

    def state_dict(self):
        """What the next epoch depends on besides the parameters and the optimizer state.

        Returns
        -------
        dict
            JSON-serialisable: ``epoch`` (the last finished epoch), ``history`` and
            ``rng``, the states of the NumPy generators that draw the triplets, the batch
            order and the P x K batches.
        """
        return {
            "epoch": self.epoch,
            "history": self.history,
            "rng": {name: gen.bit_generator.state for name, gen in self._generators().items()},
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output; :meth:`fit` then continues after its epoch.

        Raises
        ------
        ValueError
            The state does not fit this trainer (other generators, or an epoch beyond
            ``config.epochs``).
        """
        generators = self._generators()
        rng = state.get("rng", {})
        if set(rng) != set(generators):
            raise ValueError(
                f"trainer state has random generators {sorted(rng)}, this trainer "
                f"{sorted(generators)} (a different --miner?)"
            )
        epoch = int(state["epoch"])
        if not 0 <= epoch <= self.config.epochs:
            raise ValueError(f"trainer state is at epoch {epoch}, beyond {self.config.epochs}")
        for name, gen in generators.items():
            gen.bit_generator.state = rng[name]
        self.epoch = epoch
        self.history = list(state["history"])

    def _generators(self):
        gens = {"batch_order": self._rng, "triplets": self.train_set._rng}
        if self.sampler is not None:
            gens["pk_sampler"] = self.sampler._rng
        return gens

    def _batches(self):
        """This epoch's batches as an int32 NDArray: ``(num_batches, B, 3)`` triplets
        (offline) or ``(num_batches, P*K)`` sample indices (online).

        Offline, the last batch is topped up with triplets from the start of the shuffled
        order: a fixed batch shape lets the hybridized graph keep its memory
        (``static_shape``) and no triplet is skipped.

        With ``num_workers > 1`` every worker draws the same epoch and keeps batch
        ``rank`` of each group of ``num_workers``, the last group topped up the same way:
        every worker gets as many batches as the others (dist_sync waits for all of them).
        """
        workers = self.num_workers
        if self.sampler is not None:
            batches = np.asarray(list(self.sampler), dtype=np.int32)
            groups = -(-len(batches) // workers)
            # np.resize repeats whole rows from the start: the group tops up cyclically.
            batches = np.resize(batches, (groups * workers, batches.shape[1]))
        else:
            triplets = self.train_set.triplets
            size = min(self.config.batch_size, len(triplets))
            order = self._rng.permutation(len(triplets))
            order = np.resize(order, len(order) + (-len(order) % (size * workers)))
            batches = triplets[order].astype(np.int32).reshape(-1, size, 3)
        batches = batches.reshape(-1, workers, *batches.shape[1:])[:, self.rank]
        home = self.contexts[0] if len(self.contexts) == 1 else mx.cpu()
        return nd.array(batches, ctx=home, dtype=np.int32)

    def _losses(self, i, idx):
        """Per-triplet loss ``(M,)`` and weight ``(M,)`` (None: all count) on context i."""
        if self.miner is None:
            return self._step(self._data[i], idx), None
        emb = self._step(self._data[i], idx)
        with autograd.pause():
            labels = nd.take(self._labels[i], idx)
            a, p, n, weight = self.miner.mine(emb.detach(), labels)
        loss = self.loss_fn(nd.take(emb, a), nd.take(emb, p), nd.take(emb, n))
        return loss * weight, weight

    def _train_epoch(self):
        batches = self._batches()
        self.num_batches = len(batches)
        zeros = [nd.zeros((1,), ctx=c) for c in self.contexts]
        loss_sum, active, count = list(zeros), list(zeros), list(zeros)
        for b in range(self.num_batches):
            self.batch = b
            parts = gluon.utils.split_and_load(batches[b], self.contexts, even_split=False)
            with autograd.record():
                outputs = [self._losses(i, idx) for i, idx in enumerate(parts)]
                if self.miner is not None:
                    # Mean over the mined triplets of each slice; a slice with none gives 0.
                    objectives = [loss.sum() / nd.maximum(w.sum(), 1.0) for loss, w in outputs]
            for i, (loss, weight) in enumerate(outputs):
                (loss if self.miner is None else objectives[i]).backward()
                loss_sum[i] = loss_sum[i] + loss.sum()
                n_active = (loss > 0).sum()
                active[i] = active[i] + n_active
                count[i] = count[i] + (loss.shape[0] if weight is None else weight.sum())
            # Offline: gradients summed over the batch's triplets, divided by B here.
            # Online: each slice's loss is already a mean, so average over the slices.
            # With dist_sync, over the batches of all workers (see __init__).
            per_worker = batches.shape[1] if self.miner is None else len(parts)
            self.trainer.step(per_worker * self._grad_workers)
            if (b + 1) % self.config.log_every == 0 or b + 1 == self.num_batches:
                self.running_loss = _ratio(loss_sum, count)
                if not np.isfinite(self.running_loss):
                    raise FloatingPointError(
                        f"non-finite training loss at epoch {self.epoch}, batch {b + 1}; "
                        "try a lower --lr"
                    )
            self.callbacks.on_batch_end(self)
        return {
            "loss": _ratio(loss_sum, count),
            "active_fraction": _ratio(active, count),
            "triplets": int(sum(float(c.asscalar()) for c in count)),
        }


def _epoch_seed(seed, epoch):
    """A seed for MXNet's RNG in one epoch of a run (MXNet takes a C int)."""
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1)[0] % 2**31)


def _miner_options(miner, p, k):
    """Fixed mined-batch sizes: a P x K batch has P*K*(K-1) positive pairs."""
    pairs = p * k * (k - 1)
    if miner in ("semi-hard", "distance-weighted"):
        # Room for every pair: the default (B^2 rows, mostly padding) costs ~K times more.
        return {"max_pairs": pairs}
    if miner == "batch-all":
        return {"max_triplets": pairs}
    return {}


def _ratio(numerators, denominators):
    den = sum(float(d.asscalar()) for d in denominators)
    return sum(float(n.asscalar()) for n in numerators) / den if den else 0.0
