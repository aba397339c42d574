"""The training loop: triplets in, a trained embedding net out. Knows nothing of logging."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from ..config import DIST_KVSTORES, Config, resolve_epochs, resolve_schedule
from ..data.triplets import TripletDataset
from .averaging import WeightAverage
from .batching import default_pk_classes, make_strategy
from .devices import create_kvstore, resolve_contexts, set_seed
from .evaluating import TrainerEvaluation
from .hooks import Callback, CallbackList
from .miners.base import Miner
from .schedule import make_lr_scheduler, scale_learning_rate

__all__ = [
    "DIST_KVSTORES",
    "TripletTrainer",
    "create_kvstore",
    "resolve_contexts",
    "set_seed",
]

Triplets = Tuple[np.ndarray, np.ndarray, np.ndarray]


class TripletTrainer(TrainerEvaluation):
    """Trains an embedding net with the triplet loss.

    ``config.miner`` chooses the :class:`~gluon_triplet.training.batching.BatchStrategy`:
    ``offline`` draws class-balanced triples of ``train_set`` every epoch, in shuffled
    batches of ``config.batch_size``; the online miners pick triplets inside P x K batches
    (``config.pk_classes`` x ``config.pk_samples``). The miner and the loss share one
    :class:`~gluon_triplet.training.distances.Distance`. The loss sums stay on the device
    and are read back every ``config.log_every`` batches.

    With a ``dist_*`` kvstore every worker draws the same epoch and trains on its share of
    each global batch; ``dist_sync`` then steps like one process on the workers' union.
    Only rank 0 evaluates.

    Parameters
    ----------
    net : gluon.HybridBlock
        Initialised on ``contexts``.
    train_set : TripletDataset
    config : Config
    contexts : list of mx.Context
        One replica per context.
    test_x : (M, ...) float32, optional
        Evaluated whole after the last epoch; with ``config.eval_every`` N > 0 also on a
        fixed sample before training (epoch 0) and every N epochs.
    test_y : (M,) labels, optional
    test_triplets : tuple of three (T,) int arrays, optional
        Fixed test triples for the strict triplet accuracy.
    callbacks : iterable of Callback
    kvstore : mx.kvstore.KVStore, optional
        The job's ``dist_*`` kvstore (see :func:`create_kvstore`); by default created from
        ``config.kvstore``.
    class_names : sequence of str, optional
        Names of labels ``0, 1, ...``: the keys of ``per_class_precision_at_1``.
    val_x, val_y, val_triplets : optional
        A validation split, evaluated before training and after every epoch (the records'
        ``"val"``) on a fixed sample of at most ``config.eval_samples``; callbacks choose
        the best epoch on it.

    Attributes a callback may read or set: ``window`` (mean ``loss`` and
    ``active_fraction`` since the previous loss read-back, None on other batches),
    ``restart_epoch`` (set after putting back earlier weights: the epoch starts again),
    ``lr_scale`` (the factor on ``config.lr`` a callback applied), ``events`` (what
    callbacks changed, kept in :meth:`state_dict`) and ``stop_training``.
    """

    def __init__(
        self,
        net: gluon.HybridBlock,
        train_set: TripletDataset,
        config: Config,
        contexts: Sequence[mx.Context],
        test_x: Optional[np.ndarray] = None,
        test_y: Optional[np.ndarray] = None,
        test_triplets: Optional[Triplets] = None,
        callbacks: Iterable[Callback] = (),
        kvstore: Optional[mx.kvstore.KVStore] = None,
        class_names: Optional[Sequence[str]] = None,
        val_x: Optional[np.ndarray] = None,
        val_y: Optional[np.ndarray] = None,
        val_triplets: Optional[Triplets] = None,
    ) -> None:
        self.net, self.train_set, self.class_names = net, train_set, class_names
        #: The epoch :meth:`fit` trains up to (``config.epochs`` resolved).
        self.total_epochs = resolve_epochs(config.epochs, len(train_set.labels))
        lr, warmup = resolve_schedule(config.lr, config.warmup_epochs, self.total_epochs)
        self.config = dataclasses.replace(
            config, epochs=self.total_epochs, lr=lr, warmup_epochs=warmup
        )
        self.contexts = list(contexts)
        self.callbacks = CallbackList(callbacks)
        self._reset_progress()
        self._join(kvstore if kvstore is not None else create_kvstore(config.kvstore))
        test, val = (test_x, test_y, test_triplets), (val_x, val_y, val_triplets)
        self._set_evaluation_data(test, val, self.rank)
        self.pk_classes = default_pk_classes(config, len(train_set.classes))
        self.strategy = make_strategy(
            net, train_set, config, self.contexts, self.num_workers, self.rank
        )
        self.num_batches = self.strategy.num_batches
        self.trainer = self._make_optimizer()
        #: With ``config.ema_decay``, the averaged weights: evaluated, saved and left in the
        #: net after :meth:`fit`; training continues from the training weights.
        self.average = (
            WeightAverage(net.collect_params(), config.ema_decay) if config.ema_decay > 0 else None
        )

    def _reset_progress(self) -> None:
        """The state of a trainer that has not trained yet."""
        self.history: List[Dict[str, Any]] = []
        self.epoch = self.batch = 0
        self.running_loss = float("nan")
        self.window: Optional[Dict[str, float]] = None
        self.restart_epoch = self.stop_training = False
        self.lr_scale = 1.0
        self.events: List[Dict[str, Any]] = []

    def _join(self, kvstore: Optional[mx.kvstore.KVStore]) -> None:
        """Take this process's place in a distributed job (or alone: rank 0 of 1)."""
        self.kvstore = kvstore
        self.rank = kvstore.rank if kvstore is not None else 0
        self.num_workers = kvstore.num_workers if kvstore is not None else 1
        # dist_sync servers sum the workers' gradients and update once: divide by the
        # global batch. dist_async applies every push as an update of its own.
        self._asynchronous = kvstore is not None and "async" in kvstore.type
        self._grad_workers = 1 if self._asynchronous else self.num_workers

    def _make_optimizer(self) -> gluon.Trainer:
        """The ``gluon.Trainer`` of ``config.optimizer``, schedule and kvstore."""
        config = self.config
        params = {"learning_rate": config.lr, "wd": config.weight_decay}
        if config.optimizer == "sgd":
            params["momentum"] = config.momentum
        # Steps are counted where the optimizer runs: async servers update once per push.
        steps = self.num_batches * (self.num_workers if self._asynchronous else 1)
        scheduler = make_lr_scheduler(config, steps)
        if scheduler is not None:
            params["lr_scheduler"] = scheduler
        kvstore = self.kvstore
        if kvstore is None and len(self.contexts) > 1:
            kvstore = config.kvstore  # gluon.Trainer creates it
        return gluon.Trainer(self.net.collect_params(), config.optimizer, params, kvstore=kvstore)

    def time_batches(self, timed: int = 3, warmup: int = 2) -> float:
        """Seconds of one batch's forward and backward pass, before training: the median of
        ``timed`` fixed batches after ``warmup`` more (which build the step's graphs).

        No update is made, BatchNorm's running statistics are put back, the batches come
        from :meth:`~.batching.BatchStrategy.probe_batches` (no generator is drawn from),
        and each epoch reseeds MXNet's RNG: the epochs train as they would have.
        """
        self._initialise()  # deferred parameters get their values as fit() would give them
        net_params = self.net.collect_params().values()
        kept = [(p, [d.copy() for d in p.list_data()]) for p in net_params if p.grad_req == "null"]
        times: List[float] = []
        try:
            start = time.perf_counter()
            probe = self.strategy.probe_batches(warmup + timed)
            for b, batch in enumerate(self.strategy.epoch_batches(probe)):
                parts = gluon.utils.split_and_load(batch, self.contexts, even_split=False)
                with autograd.record():
                    outputs = [self.strategy.forward(i, idx) for i, idx in enumerate(parts)]
                for objective, _ in outputs:
                    objective.backward()
                nd.waitall()
                now = time.perf_counter()
                if b >= warmup:
                    times.append(now - start)
                start = now
        finally:
            for param, saved in kept:
                for data, value in zip(param.list_data(), saved):
                    value.copyto(data)
            nd.waitall()
        return float(np.median(times))

    @property
    def miner(self) -> Optional[Miner]:
        """The online miner, None for offline triplets."""
        return getattr(self.strategy, "miner", None)

    @property
    def loss_fn(self) -> gluon.loss.Loss:
        """The triplet loss, under the distance the miner ranks by."""
        return self.strategy.loss_fn

    def fit(self) -> List[Dict[str, Any]]:
        """Train up to epoch ``config.epochs``; returns :attr:`history`.

        After :meth:`load_state_dict`, training continues with the epoch after the
        restored one. With ``config.ema_decay`` the net holds the averaged weights during
        evaluation, the epoch-end callbacks and after this returns.
        """
        if not self.history:
            self._initialise()
            self.history.append(self._record(0, 0.0, {}))
        self.callbacks.on_train_begin(self)
        epoch = self.epoch + 1
        while epoch <= self.total_epochs:
            self.epoch = epoch
            self._test_embedding = None  # the weights are about to change
            # MXNet's RNG (the miners' sampling) cannot be checkpointed: reseed each epoch.
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
        self._test_embedding = None  # the callbacks had it; a large split's is large
        return self.history

    def _initialise(self) -> None:
        """Give deferred parameters their values now, from MXNet's RNG as the run seeded
        it, on every worker alike, whatever evaluations run before the first epoch."""
        self.embed(self.train_set.x[:1])

    def _train_epoch(self) -> Dict[str, Any]:
        """One pass over this epoch's batches: ``loss``, ``active_fraction``, ``triplets``."""
        strategy, average = self.strategy, self.average
        batches = strategy.batches()
        self.num_batches = len(batches)
        # Per context, running (loss, active triplets, triplets) sums kept on the device.
        totals = [nd.zeros((3,), ctx=c) for c in self.contexts]
        before = (0.0, 0.0, 0.0)  # the sums at the previous read-back
        for b, batch in enumerate(strategy.epoch_batches(batches)):
            self.batch, self.window = b, None
            parts = gluon.utils.split_and_load(batch, self.contexts, even_split=False)
            with autograd.record():
                outputs = [strategy.forward(i, idx) for i, idx in enumerate(parts)]
            for objective, _ in outputs:
                objective.backward()
            for i, (_, stats) in enumerate(outputs):
                totals[i] = totals[i] + stats
            self.trainer.step(strategy.divisor(batch, parts) * self._grad_workers)
            if average is not None:
                average.update()
            if (b + 1) % self.config.log_every == 0 or b + 1 == self.num_batches:
                now = _read_sums(totals)
                self.running_loss = now[0] / now[2] if now[2] else 0.0
                self.window, before = _window(now, before), now
                if not np.isfinite(self.running_loss):
                    raise FloatingPointError(
                        f"non-finite training loss at epoch {self.epoch}, batch {b + 1}; "
                        "try a lower --lr"
                    )
            self.callbacks.on_batch_end(self)
            if self.restart_epoch:
                feed = getattr(strategy, "feed", None)
                if feed is not None:  # streamed: stop decoding this epoch's batches ahead
                    feed.close()
                break
        # In a ps-lite job the last push may still be queued; a worker leaving first would
        # drop it and stall the others' last pull.
        nd.waitall()
        return _window(_read_sums(totals), (0.0, 0.0, 0.0))

    def state_dict(self) -> Dict[str, Any]:
        """What the next epoch depends on besides the parameters and optimizer state.

        Returns
        -------
        dict
            JSON-serialisable: ``epoch`` (the last finished one), ``history``, ``rng`` (the
            states of the NumPy generators drawing triplets and batches), ``events`` and
            ``lr_scale`` when a callback changed the training, and with
            ``config.ema_decay`` ``average_updates``.
        """
        generators = self.strategy.generators()
        state = {
            "epoch": self.epoch,
            "history": self.history,
            "rng": {name: gen.bit_generator.state for name, gen in generators.items()},
        }
        if self.events or self.lr_scale != 1.0:
            state.update(events=self.events, lr_scale=self.lr_scale)
        if self.average is not None:
            state["average_updates"] = self.average.updates
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; :meth:`fit` then continues after its epoch.

        Raises
        ------
        ValueError
            Other generators than this trainer's, or an epoch beyond ``config.epochs``.
        """
        generators = self.strategy.generators()
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
        self._test_embedding = None  # the weights come with the state
        self.history = list(state["history"])
        self.events = list(state.get("events", []))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        if self.lr_scale != 1.0:
            scale_learning_rate(self.trainer, self.config, self.lr_scale)


def _epoch_seed(seed, epoch):
    """A seed for MXNet's RNG in one epoch of a run (MXNet takes a C int)."""
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1)[0] % 2**31)


def _read_sums(totals):
    """``(loss, active, count)`` summed over the contexts' ``(3,)`` running sums."""
    return tuple(np.sum([t.asnumpy() for t in totals], axis=0, dtype=np.float64).tolist())


def _window(now, before):
    """Mean loss, active fraction and count of the triplets between two read-backs."""
    loss, active, count = (a - b for a, b in zip(now, before))
    if count <= 0:
        return {"loss": 0.0, "active_fraction": 0.0, "triplets": 0}
    return {"loss": loss / count, "active_fraction": active / count, "triplets": int(count)}
