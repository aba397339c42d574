"""What a :class:`~gluon_triplet.training.trainer.TripletTrainer` measures: the test and
validation splits, per epoch on a fixed sample and after the last epoch in full."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.triplets import create_pairs
from ..evaluation.metrics import clustering_metrics, evaluate_embeddings, per_class_precision_at_1
from ..nets.embed import embed

if TYPE_CHECKING:
    import mxnet as mx

    from ..config import Config

__all__ = ["TrainerEvaluation", "evaluation_sample", "sample_note"]

#: Test samples whose raw (pre-normalisation) embedding norm is reported.
_NORM_SAMPLES = 2000
#: Seeds of the test and the validation samples.
_TEST_SALT, _VAL_SALT = 0x65766C, 0x76616C
#: A sample holding fewer samples per class than this on average is drawn from fewer
#: classes, this many of each (so that every query has others of its class to find).
_SAMPLE_PER_CLASS = 10


def evaluation_sample(labels, config, salt=_TEST_SALT):
    """``(indices, triplets)`` of a split's per-epoch evaluation sample, or None for the
    whole split (``config.eval_samples`` 0 or at least the split's size, or no two samples
    of the sample share a label). Uniform when it holds :data:`_SAMPLE_PER_CLASS` samples a
    class on average, else that many of each of as many seeded random classes as fit."""
    size = config.eval_samples
    if labels is None or not size or size >= len(labels):
        return None
    rng = np.random.default_rng([config.seed % 2**63, salt])
    _, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    if size >= _SAMPLE_PER_CLASS * len(counts):
        pick = np.sort(rng.choice(len(labels), size, replace=False))
    else:
        pick = _class_sample(codes.reshape(-1), counts, size, rng)
    y = np.asarray(labels)[pick]
    if (np.unique(y, return_counts=True)[1] >= 2).sum() < 2:
        return None
    try:
        return pick, create_pairs(y, seed=config.seed, warn=False)
    except ValueError:
        return None


def _class_sample(codes, counts, size, rng):
    """Sorted indices: up to :data:`_SAMPLE_PER_CLASS` of each class of at least 2 samples,
    classes in seeded random order, until ``size`` are taken."""
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


def sample_note(labels, sample) -> Optional[str]:
    """``evaluated_on`` of a split's evaluation sample (None: the whole split)."""
    if sample is None:
        return None
    y = np.asarray(labels)
    note = f"fixed sample of {len(sample[0])} of {len(y)}"
    drawn, total = len(np.unique(y[sample[0]])), len(np.unique(y))
    return note + (f", {drawn} of {total} classes" if drawn < total else "")


def _split(x, y, triplets, sample):
    """``(x, y, triplets)`` of a whole split, or of its ``(indices, triplets)`` sample."""
    if sample is None:
        return x, y, triplets
    pick, triplets = sample
    return x[pick], np.asarray(y)[pick], triplets


class TrainerEvaluation:
    """The evaluation half of :class:`~gluon_triplet.training.trainer.TripletTrainer`
    (needs its ``net``, ``config``, ``contexts``, ``epoch``, ``total_epochs``, ``history``
    and ``class_names``)."""

    net: Any
    config: Config
    contexts: List[mx.Context]
    epoch: int
    total_epochs: int
    history: List[Dict[str, Any]]
    class_names: Optional[Sequence[str]]

    def _set_evaluation_data(self, test, val, rank: int) -> None:
        """Keep the ``(x, y, triplets)`` splits (None on ranks other than 0, which do not
        evaluate) and draw their evaluation samples."""
        test, val = (test, val) if rank == 0 else ((None,) * 3, (None,) * 3)
        self.test_x, self.test_y, self.test_triplets = test
        self.val_x, self.val_y, self.val_triplets = val
        self._eval_sample = evaluation_sample(self.test_y, self.config)
        self._val_sample = evaluation_sample(self.val_y, self.config, _VAL_SALT)
        self._eval_note = sample_note(self.test_y, self._eval_sample)
        self._val_note = sample_note(self.val_y, self._val_sample)
        self._final: Optional[Tuple[int, np.ndarray, Dict[Any, float]]] = None
        # The whole test split's embedding by the current weights, from the last whole
        # evaluation; the loop drops it when the weights change (see embed's test_index).
        self._test_embedding: Optional[np.ndarray] = None

    def embed(
        self, x: np.ndarray, desc: Optional[str] = None, test_index: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Embeddings of ``x`` by the current net: ``(N, ...) -> (N, D) float32``; ``desc``
        labels a progress bar shown when that takes more than a few seconds.

        ``test_index`` ``(N,)`` int says that ``x`` is ``test_x[test_index]``: its rows are
        then taken from the whole test split's embedding when an evaluation of the whole
        split made one with the current weights (after the last epoch, until the epoch-end
        and train-end callbacks have run), instead of a second pass through the net. Do
        not pass it after changing the weights outside ``fit``.
        """
        if test_index is not None and self._test_embedding is not None:
            return self._test_embedding[np.asarray(test_index)]
        return embed(
            self.net, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0], desc=desc
        )

    def evaluate_validation(self) -> Dict[str, Any]:
        """Metrics of the current net on the validation split's fixed sample (said in
        ``evaluated_on``), or on the whole split when it is no larger; {} without one."""
        if self.val_x is None or self.val_y is None:
            return {}
        x, y, triplets = _split(self.val_x, self.val_y, self.val_triplets, self._val_sample)
        emb = self.embed(x, "evaluating validation")
        result = evaluate_embeddings(emb, y, triplets=triplets, margin=self.config.margin)
        if self._val_note:
            result["evaluated_on"] = self._val_note
        return result

    def evaluate(self, sample: bool = False) -> Dict[str, Any]:
        """Metrics of the current net on the test split (see
        :func:`~gluon_triplet.evaluation.metrics.evaluate_embeddings`): with ``sample`` on
        its fixed sample (said in ``evaluated_on``), else on the whole split."""
        if self.test_x is None or self.test_y is None:
            return {}
        picked = self._eval_sample if sample else None
        x, y, triplets = _split(self.test_x, self.test_y, self.test_triplets, picked)
        emb = self.embed(x, "evaluating test")
        result: Dict[str, Any] = evaluate_embeddings(
            emb,
            y,
            triplets=triplets,
            margin=self.config.margin,
            per_class=picked is None,
            class_names=self.class_names,
        )
        if picked is None:  # kept for _finish_evaluation
            self._final = (self.epoch, emb, result.pop("per_class_precision_at_1"))
            self._test_embedding = emb
        else:
            result["evaluated_on"] = self._eval_note
        body = getattr(self.net, "body", None)
        if getattr(self.net, "normalize", False) and body is not None:
            x = getattr(self.net, "prepare_input", lambda a: a)(x[:_NORM_SAMPLES])
            raw = embed(body, x, batch_size=self.config.eval_batch_size, ctx=self.contexts[0])
            result["raw_embedding_norm"] = float(np.linalg.norm(raw, axis=1).mean())
        return result

    def _record(self, epoch: int, seconds: float, train: Dict[str, Any]) -> Dict[str, Any]:
        """An epoch's history record: training stats, test and validation metrics."""
        record = {"epoch": epoch, "time": seconds, "train": train}
        record["test"] = self._evaluate_epoch(epoch)
        if self.val_x is not None:
            record["val"] = self.evaluate_validation()
        return record

    def _evaluate_epoch(self, epoch: int) -> Dict[str, Any]:
        """Test metrics of an epoch: the last on the whole split, epoch 0 and every
        ``config.eval_every``-th on the sample, else {}."""
        if epoch == self.total_epochs:
            return self.evaluate()
        every = self.config.eval_every
        return self.evaluate(sample=True) if every and not epoch % every else {}

    def _finish_evaluation(self) -> None:
        """Complete the last record's test metrics: the whole split (if it was scored on
        the sample), per-class P@1 and the clustering metrics, from one embedding."""
        record = self.history[-1]
        if self._final is None or self._final[0] != record["epoch"]:
            if not record["test"] or "evaluated_on" in record["test"]:
                record["test"] = self.evaluate()
            else:  # resumed after the last epoch: its metrics are in the history
                emb = self.embed(self.test_x)
                per_class = per_class_precision_at_1(emb, self.test_y, class_names=self.class_names)
                self._final = (record["epoch"], emb, per_class)
                self._test_embedding = emb
        assert self._final is not None
        _, emb, per_class = self._final
        record["test"]["per_class_precision_at_1"] = per_class
        record["test"].update(clustering_metrics(emb, self.test_y, seed=self.config.seed))
        self._final = None
