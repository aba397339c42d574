"""The training loop: triplets in, a trained embedding net out. Knows nothing of logging."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import random
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from ..config import DIST_KVSTORES, Config, resolve_epochs
from ..data.triplets import TripletDataset, create_pairs
from ..evaluation.metrics import clustering_metrics, evaluate_embeddings, per_class_precision_at_1
from ..nets.embed import embed
from ..runs.report import command
from .averaging import WeightAverage
from .batching import default_pk_classes, make_strategy
from .callbacks import Callback, CallbackList
from .miners.base import Miner
from .schedule import make_lr_scheduler, scale_learning_rate

__all__ = [
    "DIST_KVSTORES",
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
            "start one with: "
            + command("launch", "-n", "WORKERS", "-s", "SERVERS", "--", "--kvstore", kind, "...")
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


class TripletTrainer:
    """Trains an embedding net with the triplet loss.

    Where the triplets come from is the job of a
    :class:`~gluon_triplet.training.batching.BatchStrategy`, chosen by ``config.miner``:

    ``offline`` (the reference recipe)
        The class-balanced triples of ``train_set`` (redrawn every epoch) in shuffled
        batches of ``config.batch_size``
        (:class:`~gluon_triplet.training.batching.OfflineTriplets`).
    ``batch-hard`` / ``semi-hard`` / ``batch-all``
        P x K batches (``config.pk_classes`` classes x ``config.pk_samples`` samples, see
        :class:`~gluon_triplet.data.samplers.PKBatchSampler`) go through the net once and the
        miner picks triplets inside each (:class:`~gluon_triplet.training.batching.OnlineMining`).

    The loss is ``gluon.loss.TripletLoss`` for ``config.distance == "squared"``, else the
    same formula under that distance (:mod:`gluon_triplet.training.losses`): the miner and the loss
    share one :class:`~gluon_triplet.training.distances.Distance`.

    The training data sits on every context as one NDArray; a step (gather, net, online
    miner, loss and the batch's loss sums) is one hybridized graph; the sums are added up
    on the device and read back only every ``config.log_every`` batches, so the host does
    not wait on every step.

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
        Evaluated whole after the last epoch; with ``config.eval_every`` N > 0 also on a
        fixed sample before training (epoch 0) and every N epochs.
    test_y : (M,) labels, optional
    test_triplets : tuple of three (T,) int arrays, optional
        Fixed test triples for the strict triplet accuracy.
    callbacks : iterable of Callback
    kvstore : mx.kvstore.KVStore, optional
        The job's ``dist_*`` kvstore when the caller already made one (see
        :func:`create_kvstore`); by default it is created from ``config.kvstore``.
    class_names : sequence of str, optional
        The names of labels ``0, 1, ...``: the keys of the final
        ``per_class_precision_at_1`` (label numbers without them).
    val_x, val_y, val_triplets : optional
        A validation split, evaluated before training and after every epoch (the records'
        ``"val"``) on a fixed sample of at most ``config.eval_samples`` samples; callbacks
        choose the best epoch on it. The test split is scored after the last epoch (and,
        with ``config.eval_every``, on a sample every N epochs), never for choosing.

    Attributes a callback may also read or set: ``window`` (the mean ``loss`` and
    ``active_fraction`` of the batches since the previous loss read-back, set on the
    batches that read it back, else None), ``restart_epoch`` (set by a callback that put
    back earlier weights: the epoch starts again from its first batch), ``lr_scale`` (the
    factor on ``config.lr`` a callback applied) and ``events`` (what callbacks changed in
    the training, as dicts; kept in :meth:`state_dict`).
    """

    def __init__(
        self,
        net: gluon.HybridBlock,
        train_set: TripletDataset,
        config: Config,
        contexts: Sequence[mx.Context],
        test_x: Optional[np.ndarray] = None,
        test_y: Optional[np.ndarray] = None,
        test_triplets: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
        callbacks: Iterable[Callback] = (),
        kvstore: Optional[mx.kvstore.KVStore] = None,
        class_names: Optional[Sequence[str]] = None,
        val_x: Optional[np.ndarray] = None,
        val_y: Optional[np.ndarray] = None,
        val_triplets: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
    ) -> None:
        self.net = net
        self.class_names = class_names
        self.train_set = train_set
        #: The epoch :meth:`fit` trains up to: ``config.epochs``, or when that is None
        #: (automatic) the count for this training set's size (``config.resolve_epochs``).
        self.total_epochs = resolve_epochs(config.epochs, len(train_set.labels))
        self.config = dataclasses.replace(config, epochs=self.total_epochs)
        self.contexts = list(contexts)
        self.test_x = test_x
        self.test_y = test_y
        self.test_triplets = test_triplets
        self.val_x, self.val_y, self.val_triplets = val_x, val_y, val_triplets
        self.callbacks = CallbackList(callbacks)
        self.history: List[Dict[str, Any]] = []
        self.epoch = 0
        self.batch = 0
        self.running_loss = float("nan")
        self.window: Optional[Dict[str, float]] = None
        self.restart_epoch = False
        self.lr_scale = 1.0
        self.events: List[Dict[str, Any]] = []
        self.stop_training = False
        self.kvstore = kvstore if kvstore is not None else create_kvstore(config.kvstore)
        self.rank = self.kvstore.rank if self.kvstore is not None else 0
        self.num_workers = self.kvstore.num_workers if self.kvstore is not None else 1
        if self.rank != 0:
            # Evaluation runs once, on rank 0.
            self.test_x = self.test_y = self.test_triplets = None
            self.val_x = self.val_y = self.val_triplets = None
        self._eval_sample = _evaluation_sample(self.test_y, config)
        self._val_sample = _evaluation_sample(self.val_y, config, _VAL_SAMPLE_SALT)
        self._eval_note = _sample_note(self.test_y, self._eval_sample)
        self._val_note = _sample_note(self.val_y, self._val_sample)
        self._final: Optional[Tuple[int, np.ndarray, Dict[Any, float]]] = None
        # A dist_sync server sums the workers' gradients and updates once, so dividing by
        # the global batch makes n workers step like one process on their union; dist_async
        # applies every worker's push as an update of its own.
        asynchronous = self.kvstore is not None and "async" in self.kvstore.type
        self._grad_workers = 1 if asynchronous else self.num_workers
        self.pk_classes = default_pk_classes(config, len(train_set.classes))
        self.strategy = make_strategy(
            net, train_set, config, self.contexts, self.num_workers, self.rank
        )
        self.num_batches = self.strategy.num_batches

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
        # With --ema-decay, the averaged weights are the run's net: evaluated, handed to the
        # epoch-end callbacks (saving) and left in the net after fit(); training continues
        # from the training weights.
        self.average = (
            WeightAverage(net.collect_params(), config.ema_decay)
            if getattr(config, "ema_decay", 0.0) > 0
            else None
        )

    @property
    def miner(self) -> Optional[Miner]:
        """The online miner, None for offline triplets."""
        return getattr(self.strategy, "miner", None)

    @property
    def loss_fn(self) -> gluon.loss.Loss:
        """The triplet loss, under the distance the miner ranks by."""
        return self.strategy.loss_fn

    def embed(self, x: np.ndarray, desc: Optional[str] = None) -> np.ndarray:
        """Embeddings of ``x`` by the current net: ``(N, ...) -> (N, D) float32`` numpy;
        ``desc`` labels a progress bar shown when that takes more than a few seconds."""
        return embed(
            self.net, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0], desc=desc
        )

    def evaluate_validation(self) -> Dict[str, Any]:
        """Metrics of the current net on the validation split, {} without one: on its fixed
        sample of at most ``config.eval_samples`` samples, each querying the others (said
        in ``evaluated_on``), or on the whole split when it is no larger."""
        if self.val_x is None or self.val_y is None:
            return {}
        note = self._val_note
        if self._val_sample is None:
            x, y, triplets = self.val_x, self.val_y, self.val_triplets
        else:
            pick, triplets = self._val_sample
            x, y = self.val_x[pick], np.asarray(self.val_y)[pick]
        emb = self.embed(x, "evaluating validation")
        result = evaluate_embeddings(emb, y, triplets=triplets, margin=self.config.margin)
        if note:
            result["evaluated_on"] = note
        return result

    def _record(self, epoch: int, seconds: float, train: Dict[str, Any]) -> Dict[str, Any]:
        """An epoch's record: its training stats, the test metrics and, with a validation
        split, the validation metrics."""
        record = {
            "epoch": epoch,
            "time": seconds,
            "train": train,
            "test": self._evaluate_epoch(epoch),
        }
        if self.val_x is not None:
            record["val"] = self.evaluate_validation()
        return record

    def evaluate(self, sample: bool = False) -> Dict[str, Any]:
        """Metrics of the current net on the test split (see ``metrics.evaluate_embeddings``).

        With ``sample``, on the fixed sample of ``config.eval_samples`` test samples (each
        querying the others), said in ``evaluated_on``; else on the whole split.
        """
        if self.test_x is None or self.test_y is None:
            return {}
        pick, triplets = self._eval_sample if sample and self._eval_sample else (None, None)
        if pick is None:
            x, y, triplets = self.test_x, self.test_y, self.test_triplets
        else:
            x, y = self.test_x[pick], self.test_y[pick]
        emb = self.embed(x, "evaluating test")
        result: Dict[str, Any] = evaluate_embeddings(
            emb,
            y,
            triplets=triplets,
            margin=self.config.margin,
            per_class=pick is None,
            class_names=self.class_names,
        )
        if pick is None:
            # Kept for the end of training, which needs this embedding and these scores.
            self._final = (self.epoch, emb, result.pop("per_class_precision_at_1"))
        else:
            result["evaluated_on"] = self._eval_note
        body = getattr(self.net, "body", None)
        if getattr(self.net, "normalize", False) and body is not None:
            # Collapse shows in the norm *before* normalisation (after it, every norm is
            # 1); a sample of the test set is enough for a mean.
            x = getattr(self.net, "prepare_input", lambda a: a)(x[:_NORM_SAMPLES])
            raw = embed(body, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0])
            result["raw_embedding_norm"] = float(np.linalg.norm(raw, axis=1).mean())
        return result

    def fit(self) -> List[Dict[str, Any]]:
        """Train up to epoch ``config.epochs``; returns :attr:`history`.

        After :meth:`load_state_dict`, training continues with the epoch after the
        restored one, and its history is kept. With ``config.ema_decay`` the net holds the
        averaged weights (:attr:`average`) during evaluation, the epoch-end callbacks and
        after this returns.
        """
        if not self.history:
            self._initialise()
            self.history.append(self._record(0, 0.0, {}))
        self.callbacks.on_train_begin(self)
        epoch = self.epoch + 1
        while epoch <= self.total_epochs:
            self.epoch = epoch
            # MXNet's RNG (the miners' sampling) cannot be saved, so each epoch reseeds it:
            # an epoch's randomness then depends only on state a checkpoint holds.
            mx.random.seed(_epoch_seed(self.config.seed, epoch))
            self.strategy.begin_epoch(epoch)
            if self.average is not None:
                self.average.swap_out()
            start = time.perf_counter()
            self.callbacks.on_epoch_begin(self)
            train_stats = self._train_epoch()
            if self.restart_epoch:  # a callback rewound the weights: this epoch again
                self.restart_epoch = False
                continue
            if self.average is not None:
                self.average.swap_in()
            self.history.append(self._record(epoch, time.perf_counter() - start, train_stats))
            self.callbacks.on_epoch_end(self)
            if self.stop_training:
                break
            epoch += 1
        if self.average is not None:
            self.average.swap_in()  # also when a resumed run had no epoch left
        if self.test_x is not None:
            self._finish_evaluation()
        self.callbacks.on_train_end(self)
        return self.history

    def _initialise(self) -> None:
        """Give deferred parameters their shapes and initial values now, from MXNet's RNG
        as the run seeded it: the initial weights then do not depend on which evaluations
        run before the first epoch (which reseeds the RNG), and every worker of a
        distributed job draws the same."""
        self.embed(self.train_set.x[:1])

    def _evaluate_epoch(self, epoch: int) -> Dict[str, Any]:
        """An epoch's test metrics: the last epoch on the whole split; with
        ``config.eval_every`` N > 0 also epoch 0 and every N-th on the evaluation sample;
        with 0 no other epoch ({}: the per-epoch figures are the validation split's)."""
        if epoch == self.total_epochs:
            return self.evaluate()
        every = getattr(self.config, "eval_every", 0)
        if not every or epoch % every:
            return {}
        return self.evaluate(sample=True)

    def _finish_evaluation(self) -> None:
        """The last epoch's record gets the whole split's metrics (when training stopped
        early its epoch was evaluated on the sample), per-class P@1 and NMI/AMI: from the
        epoch's own embedding and search, not a second pass."""
        record = self.history[-1]
        assert self.test_x is not None
        if self._final is None or self._final[0] != record["epoch"]:
            if not record["test"] or "evaluated_on" in record["test"]:
                record["test"] = self.evaluate()
            else:  # resumed after the last epoch: its metrics are in the history
                emb = self.embed(self.test_x)
                per_class = per_class_precision_at_1(emb, self.test_y, class_names=self.class_names)
                self._final = (record["epoch"], emb, per_class)
        assert self._final is not None
        _, emb, per_class = self._final
        final = record["test"]
        final["per_class_precision_at_1"] = per_class
        # k-means for NMI/AMI: about a second on 10k test samples, a sample above 20k.
        final.update(clustering_metrics(emb, self.test_y, seed=self.config.seed))
        self._final = None

    def state_dict(self) -> Dict[str, Any]:
        """What the next epoch depends on besides the parameters and the optimizer state.

        Returns
        -------
        dict
            JSON-serialisable: ``epoch`` (the last finished epoch), ``history`` and
            ``rng``, the states of the NumPy generators that draw the triplets, the batch
            order and the P x K batches; with ``config.ema_decay``, ``average_updates``
            (the weight average's update count; the arrays are the checkpoint's).
        """
        state = {
            "epoch": self.epoch,
            "history": self.history,
            "rng": {name: gen.bit_generator.state for name, gen in self._generators().items()},
        }
        if self.events or self.lr_scale != 1.0:  # a callback changed the training
            state.update(events=self.events, lr_scale=self.lr_scale)
        if self.average is not None:
            state["average_updates"] = self.average.updates
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
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
        if not 0 <= epoch <= self.total_epochs:
            raise ValueError(f"trainer state is at epoch {epoch}, beyond {self.total_epochs}")
        for name, gen in generators.items():
            gen.bit_generator.state = rng[name]
        self.epoch = epoch
        self.history = list(state["history"])
        self.events = list(state.get("events", []))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        if self.lr_scale != 1.0:
            scale_learning_rate(self.trainer, self.config, self.lr_scale)

    def _generators(self):
        return self.strategy.generators()

    def _batches(self):
        """This epoch's batches for this worker (see :meth:`BatchStrategy.batches`)."""
        return self.strategy.batches()

    def _forward(self, i, idx):
        """The step graph on context i: ``(objective, (3,) stats)``, see
        :meth:`BatchStrategy.forward`."""
        return self.strategy.forward(i, idx)

    def _train_epoch(self):
        strategy = self.strategy
        average = self.average
        batches = self._batches()
        self.num_batches = len(batches)
        # Per context, the running sums of (loss, active triplets, triplets), kept on the
        # device: one add per batch, read back every log_every batches.
        totals = [nd.zeros((3,), ctx=c) for c in self.contexts]
        before = (0.0, 0.0, 0.0)  # the sums at the previous read-back
        # In memory each batch is a row of `batches`; streamed, its pictures are decoded
        # ahead by DataLoader workers and the row is re-indexed into them.
        for b, batch in enumerate(strategy.epoch_batches(batches)):
            self.batch = b
            self.window = None
            parts = gluon.utils.split_and_load(batch, self.contexts, even_split=False)
            with autograd.record():
                outputs = [self._forward(i, idx) for i, idx in enumerate(parts)]
            for objective, _ in outputs:
                objective.backward()
            for i, (_, stats) in enumerate(outputs):
                totals[i] = totals[i] + stats
            # With dist_sync, over the batches of all workers (see __init__).
            self.trainer.step(strategy.divisor(batch, parts) * self._grad_workers)
            if average is not None:
                average.update()
            if (b + 1) % self.config.log_every == 0 or b + 1 == self.num_batches:
                now = _raw_sums(totals)
                self.running_loss = now[0] / now[2] if now[2] else 0.0
                self.window = _window(now, before)
                before = now
                if not np.isfinite(self.running_loss):
                    raise FloatingPointError(
                        f"non-finite training loss at epoch {self.epoch}, batch {b + 1}; "
                        "try a lower --lr"
                    )
            self.callbacks.on_batch_end(self)
            if self.restart_epoch:
                # Streamed: stop the workers decoding this epoch's next batches ahead.
                feed = getattr(strategy, "feed", None)
                if feed is not None:
                    feed.close()
                break
        # The epoch ends when its last update has been applied: in a ps-lite job the last
        # push may still be queued, and a worker that leaves first would drop it (MXNet
        # skips queued operations at exit) and stall the others' last pull.
        nd.waitall()
        loss, active, count = _sums(totals)
        return {"loss": loss, "active_fraction": active, "triplets": count}


#: Seeds the validation sample apart from the test sample's.
_VAL_SAMPLE_SALT = 0x76616C


#: A sample that would hold fewer samples of a class than this on average is drawn from
#: fewer classes, this many samples each: a query of a uniform sample of 2,000 among 1,000
#: classes would have about one other of its class to find, and its P@1 would be noise.
_SAMPLE_PER_CLASS = 10


def _evaluation_sample(labels, config, salt=0x65766C):
    """``(indices, triplets)`` of a split's per-epoch evaluation sample, or None: the whole
    split (``eval_samples`` 0 or at least the split's size, or a sample in which no two
    samples share a label). Uniform when it holds :data:`_SAMPLE_PER_CLASS` samples a class
    on average, else that many of each of as many seeded random classes as fit."""
    size = getattr(config, "eval_samples", 0)
    if labels is None or not size or size >= len(labels):
        return None
    rng = np.random.default_rng([config.seed % 2**63, salt])
    _, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    if size >= _SAMPLE_PER_CLASS * len(counts):
        pick = np.sort(rng.choice(len(labels), size, replace=False))
    else:
        pick = _class_sample(codes, counts, size, rng)
    y = np.asarray(labels)[pick]
    if (np.bincount(np.unique(y, return_inverse=True)[1]) >= 2).sum() < 2:
        return None
    try:
        triplets = create_pairs(y, seed=config.seed, warn=False)
    except ValueError:
        return None
    return pick, triplets


def _class_sample(codes, counts, size, rng):
    """Sorted indices: up to :data:`_SAMPLE_PER_CLASS` of each class (classes of at least 2,
    in seeded random order) until ``size`` are taken."""
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    taken, left = [], size
    for c in rng.permutation(len(counts)):
        k = min(_SAMPLE_PER_CLASS, int(counts[c]), left)
        if counts[c] < 2 or k < 2:
            continue
        taken.append(rng.choice(members[c], k, replace=False))
        left -= k
        if left < 2:
            break
    return np.sort(np.concatenate(taken)) if taken else np.arange(0)


def _sample_note(labels, sample) -> Optional[str]:
    """``evaluated_on`` of a split's evaluation sample (None: the whole split)."""
    if sample is None:
        return None
    pick = sample[0]
    note = f"fixed sample of {len(pick)} of {len(labels)}"
    total = len(np.unique(np.asarray(labels)))
    drawn = len(np.unique(np.asarray(labels)[pick]))
    return note + (f", {drawn} of {total} classes" if drawn < total else "")


def _epoch_seed(seed, epoch):
    """A seed for MXNet's RNG in one epoch of a run (MXNet takes a C int)."""
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1)[0] % 2**31)


def _raw_sums(totals):
    """The summed loss, active triplets and triplets of the contexts' running sums."""
    loss, active, count = (sum(float(x) for x in column) for column in zip(*_host(totals)))
    return loss, active, count


def _sums(totals):
    """Mean loss, active fraction and triplet count from the contexts' running sums."""
    loss, active, count = _raw_sums(totals)
    if not count:
        return 0.0, 0.0, 0
    return loss / count, active / count, int(count)


def _window(now, before):
    """The mean loss and active fraction of the triplets between two read-backs."""
    loss, active, count = (a - b for a, b in zip(now, before))
    if count <= 0:
        return {"loss": 0.0, "active_fraction": 0.0, "triplets": 0}
    return {"loss": loss / count, "active_fraction": active / count, "triplets": int(count)}


def _host(totals):
    """One read-back per context: its ``(3,)`` sums as float32 NumPy."""
    return [t.asnumpy() for t in totals]
