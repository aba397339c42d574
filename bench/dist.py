#!/usr/bin/env python
"""Epoch time of data-parallel training over ps-lite: one process vs 1, 2, ... local workers.

Each configuration trains ``TripletTrainer`` (the reference recipe: offline triplets, the
MLP, SGD) for a few epochs without evaluation, so the epoch time is training alone:

``local``        one process, no kvstore (the baseline)
``N workers``    ``gluon-triplet launch``'s job: 1 server + N workers with ``dist_sync``,
                 each worker on its share of every epoch (batch ``--batch-size`` each, so
                 the global batch is N x that)

Prints per-configuration epoch times (median over the epochs after the first, which pays
for graph building) and the speed-up over ``local``. A benchmark, not a test.

Usage::

    python bench/dist.py                                   # fashion-mnist, 1 and 2 workers
    python bench/dist.py --dataset mnist-5k --workers 1 2 --epochs 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time


def train(dataset, epochs, batch_size, kvstore):
    """Train; returns rank, workers and per-epoch seconds."""
    # gluon_triplet before MXNet: it sets the OpenMP defaults MXNet reads when it loads.
    importlib.import_module("gluon_triplet")
    import mxnet as mx

    from gluon_triplet.config import PRESETS, Config
    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.data.triplets import TripletDataset
    from gluon_triplet.nets.zoo import build_model
    from gluon_triplet.training.trainer import TripletTrainer, set_seed

    data = load_dataset(dataset)
    config = Config(
        **{
            **PRESETS["reference"],
            "epochs": epochs,
            "batch_size": batch_size,
            "kvstore": kvstore,
            "seed": 0,
        }
    )
    set_seed(config.seed)
    train_set = TripletDataset(data.x_train, data.y_train, seed=config.seed)
    net = build_model("mlp", ctx=[mx.cpu()])
    trainer = TripletTrainer(net, train_set, config, [mx.cpu()])
    history = trainer.fit()
    return {
        "rank": trainer.rank,
        "workers": trainer.num_workers,
        "batches": trainer.num_batches,
        "epoch_seconds": [r["time"] for r in history[1:]],
    }


def worker(args):
    try:
        result = train(args.dataset, args.epochs, args.batch_size, "dist_sync")
        print("RESULT " + json.dumps(result), flush=True)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # do not wait in ps-lite's exit barrier


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1024, help="per worker (default: 1024)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    import io

    from gluon_triplet.training.launch import launch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.dataset}, batch {args.batch_size} per worker, {args.epochs} epochs, {cpus} CPUs")
    rows = []
    start = time.perf_counter()
    local = train(args.dataset, args.epochs, args.batch_size, "device")
    rows.append(("local (no kvstore)", local, time.perf_counter() - start))
    for n in args.workers:
        out = io.StringIO()
        command = [sys.executable, os.path.abspath(__file__), "--worker"]
        command += ["--dataset", args.dataset, "--epochs", str(args.epochs)]
        command += ["--batch-size", str(args.batch_size)]
        start = time.perf_counter()
        code = launch(command, n, 1, timeout=3600, stdout=out)
        wall = time.perf_counter() - start
        if code:
            print(out.getvalue())
            return code
        results = [
            json.loads(line.split("RESULT ", 1)[1])
            for line in out.getvalue().splitlines()
            if "RESULT " in line
        ]
        # dist_sync keeps the workers in step: the slowest one is the job's epoch time.
        slowest = max(results, key=lambda r: statistics.median(r["epoch_seconds"][1:] or [0]))
        rows.append((f"{n} worker(s) + 1 server", slowest, wall))
    base = statistics.median(local["epoch_seconds"][1:] or local["epoch_seconds"])
    print(
        f"{'configuration':26} {'batches/worker':>14} {'epoch s':>8} {'speed-up':>8} {'wall s':>7}"
    )
    for name, result, wall in rows:
        epoch = statistics.median(result["epoch_seconds"][1:] or result["epoch_seconds"])
        print(f"{name:26} {result['batches']:>14} {epoch:>8.2f} {base / epoch:>7.2f}x {wall:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
