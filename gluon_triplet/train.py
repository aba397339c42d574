"""The training loop: triplets in, a trained embedding net out. Knows nothing of logging."""

from __future__ import annotations

import logging
import random
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from .callbacks import CallbackList
from .metrics import evaluate_embeddings, per_class_precision_at_1
from .model import embed

__all__ = ["TripletTrainer", "resolve_contexts", "set_seed"]

logger = logging.getLogger("gluon_triplet")


def set_seed(seed):
    """Seed every random source a run uses: Python, NumPy and MXNet."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the global RNG
    mx.random.seed(seed)


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
    """Trains an embedding net with ``gluon.loss.TripletLoss`` on offline triplets.

    The training data sits on every context as one NDArray; each batch of triplets is
    gathered there with a single ``take`` and goes through the net as one
    ``(3B, ...)`` batch (anchors, then positives, then negatives). The loss is read back
    only every ``config.log_every`` batches, so the host does not wait on every step.

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
        self.num_batches = 0
        self.running_loss = float("nan")
        self.stop_training = False
        self._rng = np.random.default_rng(config.seed + 1)

        self.loss_fn = gluon.loss.TripletLoss(margin=config.margin)
        optimizer_params = {"learning_rate": config.lr, "wd": config.weight_decay}
        if config.optimizer == "sgd":
            optimizer_params["momentum"] = config.momentum
        self.trainer = gluon.Trainer(
            net.collect_params(),
            config.optimizer,
            optimizer_params,
            kvstore=config.kvstore if len(self.contexts) > 1 else None,
        )
        x = train_set.x.astype(np.float32, copy=False)
        self._data = [nd.array(x, ctx=c, dtype=np.float32) for c in self.contexts]
        net.hybridize(static_alloc=True, static_shape=True)

    def embed(self, x):
        """Embeddings of ``x`` by the current net: ``(N, ...) -> (N, D) float32`` numpy."""
        return embed(self.net, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0])

    def evaluate(self):
        """Metrics of the current net on the test split (see ``metrics.evaluate_embeddings``)."""
        if self.test_x is None:
            return {}
        emb = self.embed(self.test_x)
        return evaluate_embeddings(
            emb, self.test_y, triplets=self.test_triplets, margin=self.config.margin
        )

    def fit(self):
        """Train for ``config.epochs`` epochs; returns :attr:`history`."""
        self.history.append({"epoch": 0, "time": 0.0, "train": {}, "test": self.evaluate()})
        self.callbacks.on_train_begin(self)
        for epoch in range(1, self.config.epochs + 1):
            self.epoch = epoch
            if epoch > 1:
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
            # Once, at the end: a per-class report costs another retrieval pass.
            self.history[-1]["test"]["per_class_precision_at_1"] = per_class_precision_at_1(
                self.embed(self.test_x), self.test_y
            )
        self.callbacks.on_train_end(self)
        return self.history

    def _batches(self):
        """This epoch's triplets, shuffled, as an ``(num_batches, B, 3)`` int32 NDArray.

        The last batch is topped up with triplets from the start of the shuffled order: a
        fixed batch shape lets the hybridized graph keep its memory (``static_shape``) and
        no triplet is skipped.
        """
        triplets = self.train_set.triplets
        size = min(self.config.batch_size, len(triplets))
        order = self._rng.permutation(len(triplets))
        short = -len(order) % size
        if short:
            order = np.concatenate([order, order[:short]])
        batches = triplets[order].astype(np.int32).reshape(-1, size, 3)
        home = self.contexts[0] if len(self.contexts) == 1 else mx.cpu()
        return nd.array(batches, ctx=home, dtype=np.int32), size

    def _train_epoch(self):
        batches, size = self._batches()
        self.num_batches = len(batches)
        loss_sum = [nd.zeros((1,), ctx=c) for c in self.contexts]
        active = [nd.zeros((1,), ctx=c) for c in self.contexts]
        for b in range(self.num_batches):
            self.batch = b
            parts = gluon.utils.split_and_load(batches[b], self.contexts, even_split=False)
            with autograd.record():
                losses = [self._forward(data, idx) for data, idx in zip(self._data, parts)]
            for i, loss in enumerate(losses):
                loss.backward()
                loss_sum[i] += loss.sum()
                active[i] += (loss > 0).sum()
            self.trainer.step(size)
            if (b + 1) % self.config.log_every == 0 or b + 1 == self.num_batches:
                self.running_loss = sum(float(s.asscalar()) for s in loss_sum) / ((b + 1) * size)
                if not np.isfinite(self.running_loss):
                    raise FloatingPointError(
                        f"non-finite training loss at epoch {self.epoch}, batch {b + 1}; "
                        "try a lower --lr"
                    )
            self.callbacks.on_batch_end(self)
        seen = self.num_batches * size
        return {
            "loss": sum(float(s.asscalar()) for s in loss_sum) / seen,
            "active_fraction": sum(float(a.asscalar()) for a in active) / seen,
            "triplets": len(self.train_set.triplets),
        }

    def _forward(self, data, idx):
        """Per-sample TripletLoss of one slice of triplets on one context."""
        flat = idx.T.reshape((-1,))  # anchors, then positives, then negatives
        emb = self.net(nd.take(data, flat))
        a, p, n = nd.split(emb, num_outputs=3, axis=0)
        return self.loss_fn(a, p, n)
