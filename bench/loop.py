"""The training loop's overhead: a real epoch against the bare step, interleaved in one run.

The target: the default recipe's training epoch (semi-hard online mining in P x K
batches, the CNN, Adam, the cosine schedule; evaluation excluded) takes at most 1.1x the
bare net's forward + backward + optimizer step at the same batch size (results:
bench/results/performance.md). This measures both in one process, round after round, so
the machine's load hits them alike:

bare   the same net (a copy), one ``P*K``-sample batch already on the context, and a fixed
       set of as many triplets as the miner returns (every positive pair of the P x K
       batch with a fixed random negative). One hybridized graph: forward, the same
       ``TripletLoss`` (mean over the triplets), under ``autograd.record``; then
       ``backward`` and ``trainer.step`` with the same optimizer and schedule. As many
       steps as the real epoch has batches. No sampling, mining, gather, statistics or
       read-back.
real   ``TripletTrainer.fit()`` for one more epoch of the recipe (no test split, so no
       evaluation): sampling, batches, mining, loss statistics, callbacks, everything.

Usage::

    python bench/loop.py                                   # fashion-mnist and mnist-5k
    python bench/loop.py --datasets mnist-5k --rounds 6
    python bench/loop.py --datasets fashion-mnist --limit 20000

The first round (graph construction) is dropped; the table gives medians over the other
rounds of wall seconds and process CPU seconds (all threads) per epoch, the median of
the per-round ratios real / bare, and the real epoch's CPU seconds per training sample.
A benchmark, not a test: the target is printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

# gluon_triplet before MXNet: it sets the OpenMP defaults MXNet reads when it loads (all
# usable CPUs, passive waiting). Spinning threads made the ratios nonsense on a busy machine.
importlib.import_module("gluon_triplet")

import numpy as np  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402

from gluon_triplet.config import Config, resolve_schedule  # noqa: E402
from gluon_triplet.data.datasets import load_dataset  # noqa: E402
from gluon_triplet.data.triplets import TripletDataset  # noqa: E402
from gluon_triplet.nets.zoo import model_from_config  # noqa: E402
from gluon_triplet.training.schedule import make_lr_scheduler  # noqa: E402
from gluon_triplet.training.trainer import TripletTrainer, resolve_contexts, set_seed  # noqa: E402

TARGET = 1.1


class BareStep(gluon.HybridBlock):
    """net + TripletLoss over fixed triplets of one batch: ``(B, ...) -> (1,)`` mean loss."""

    def __init__(self, net, loss_fn, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.loss_fn = loss_fn

    def hybrid_forward(self, F, x, a, p, n):
        emb = self.net(x)
        return F.mean(self.loss_fn(F.take(emb, a), F.take(emb, p), F.take(emb, n)))


def fixed_triplets(p, k, seed=0):
    """Every positive pair of a P x K batch (sorted by class) with a random negative."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(p), k)
    a, pos = np.nonzero((labels[:, None] == labels[None, :]) & ~np.eye(p * k, dtype=bool))
    neg = np.array([rng.choice(np.flatnonzero(labels != labels[i])) for i in a])
    return a, pos, neg


class Bare:
    """The bare loop: the recipe's net, loss and optimizer, nothing else."""

    def __init__(self, config, x, y, contexts, num_batches):
        ctx = contexts[0]
        net, _ = model_from_config(config, x.shape[1:], ctx=contexts)
        p = config.pk_classes or min(10, len(np.unique(y)))
        k = config.pk_samples
        # One real P x K batch: the first K samples of each of the first P classes.
        idx = np.concatenate([np.flatnonzero(y == c)[:k] for c in np.unique(y)[:p]])
        prepare = getattr(net, "prepare_input", lambda v: v)
        self.x = nd.array(prepare(x[idx]), ctx=ctx)
        self.triplets = [nd.array(t, ctx=ctx, dtype=np.int32) for t in fixed_triplets(p, k)]
        self.step = BareStep(net, gluon.loss.TripletLoss(margin=config.margin))
        self.step.hybridize(static_alloc=True, static_shape=True)
        params = {"learning_rate": config.lr, "wd": config.weight_decay}
        scheduler = make_lr_scheduler(config, num_batches)
        if scheduler is not None:
            params["lr_scheduler"] = scheduler
        self.trainer = gluon.Trainer(net.collect_params(), config.optimizer, params)
        self.num_batches = num_batches

    def epoch(self):
        for _ in range(self.num_batches):
            with autograd.record():
                loss = self.step(self.x, *self.triplets)
            loss.backward()
            self.trainer.step(1)
        loss.wait_to_read()


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(dataset, rounds, limit, seed):
    data = load_dataset(dataset)
    x, y = data.x_train[:limit], data.y_train[:limit]
    lr, warmup = resolve_schedule(None, None, rounds)
    config = Config(seed=seed, epochs=rounds, lr=lr, warmup_epochs=warmup)  # the default recipe
    set_seed(seed)
    contexts = resolve_contexts("auto")
    net, _ = model_from_config(config, x.shape[1:], ctx=contexts)
    trainer = TripletTrainer(net, TripletDataset(x, y, seed=seed), config, contexts)
    bare = Bare(config, x, y, contexts, trainer.num_batches)
    batch = bare.x.shape[0]

    def real():
        # fit() trains up to total_epochs (config.epochs resolved): one more each round.
        trainer.total_epochs = trainer.config.epochs = trainer.epoch + 1
        trainer.fit()
        nd.waitall()

    samples = trainer.num_batches * batch
    print(
        f"{dataset}: {len(y)} training samples, {trainer.num_batches} batches of {batch} "
        f"per epoch, miner {trainer.miner}",
        file=sys.stderr,
    )
    rows = {"bare": [], "real": []}
    for r in range(rounds):
        # Alternate the order: whichever runs second would otherwise always inherit the
        # first one's warm caches (or its neighbours' load).
        order = (("bare", bare.epoch), ("real", real))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            rows[name].append(timed(fn))
        (bw, bc), (rw, rc) = rows["bare"][-1], rows["real"][-1]
        print(
            f"  round {r + 1}: bare {bw:.2f} s ({bc:.2f} CPU s), real {rw:.2f} s "
            f"({rc:.2f} CPU s): {rw / bw:.3f}x wall, {rc / bc:.3f}x CPU",
            file=sys.stderr,
        )
    kept = {name: values[1:] for name, values in rows.items()}
    med = {
        name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for name, v in kept.items()
    }
    ratio_wall = statistics.median(r[0] / b[0] for r, b in zip(kept["real"], kept["bare"]))
    ratio_cpu = statistics.median(r[1] / b[1] for r, b in zip(kept["real"], kept["bare"]))
    return {
        "dataset": dataset,
        "samples": samples,
        "batches": trainer.num_batches,
        "bare": med["bare"],
        "real": med["real"],
        "ratio_wall": ratio_wall,
        "ratio_cpu": ratio_cpu,
        "cpu_per_sample": med["real"][1] / samples,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist-5k"])
    p.add_argument("--rounds", type=int, default=4, help="epochs of each (first dropped)")
    p.add_argument("--limit", type=int, help="train on the first N samples only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.rounds < 2:
        print("error: --rounds must be >= 2 (the first round is dropped)", file=sys.stderr)
        return 2
    results = [measure(d, args.rounds, args.limit, args.seed) for d in args.datasets]
    print(
        "| dataset | batches/epoch | bare s (CPU s) | real s (CPU s) | real / bare wall "
        "| real / bare CPU | real CPU ms/sample |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['dataset']} | {r['batches']} | {r['bare'][0]:.2f} ({r['bare'][1]:.2f}) "
            f"| {r['real'][0]:.2f} ({r['real'][1]:.2f}) | {r['ratio_wall']:.3f}x "
            f"| {r['ratio_cpu']:.3f}x | {1e3 * r['cpu_per_sample']:.3f} |"
        )
    print(f"\ntarget: real / bare <= {TARGET}x (medians of per-round ratios, first round dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
