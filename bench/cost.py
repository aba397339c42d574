"""Training cost per sample of several recipes, measured round-robin in one run (not a test).

Every recipe of ``bench/quality.py`` trains one epoch in turn, round after round, so a
change in the machine's load hits them all alike; the first round (graph construction)
is dropped and each recipe's median epoch time over the other rounds is reported, with
its ratio to the first recipe named:

    python bench/cost.py --dataset fashion-mnist --recipes default bn dw-bn --rounds 4
    python bench/cost.py --dataset mnist-5k --recipes default distance-weighted hard-soft

An epoch is one pass over the training samples for every recipe, so the ratio of epoch
times is the ratio of training costs per sample. Evaluation is not timed (no test split).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402
from quality import RECIPES  # noqa: E402

from gluon_triplet.config import Config  # noqa: E402
from gluon_triplet.data.datasets import load_dataset  # noqa: E402
from gluon_triplet.data.triplets import TripletDataset  # noqa: E402
from gluon_triplet.nets.zoo import model_from_config  # noqa: E402
from gluon_triplet.training.trainer import TripletTrainer, resolve_contexts, set_seed  # noqa: E402


def build(recipe, x, y, seed, rounds):
    config = Config(**{**RECIPES[recipe], "seed": seed, "epochs": rounds})
    set_seed(seed)
    contexts = resolve_contexts("auto")
    net, _ = model_from_config(config, x.shape[1:], ctx=contexts)
    return TripletTrainer(net, TripletDataset(x, y, seed=seed), config, contexts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--recipes", nargs="+", default=["default", "bn"])
    p.add_argument("--rounds", type=int, default=4, help="epochs per recipe (first dropped)")
    p.add_argument("--limit", type=int, help="train on the first N samples only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    unknown = [r for r in args.recipes if RECIPES.get(r) is None]
    if unknown:
        valid = ", ".join(r for r in RECIPES if RECIPES[r] is not None)
        print(f"error: unknown or untrained recipe(s) {unknown}; valid: {valid}", file=sys.stderr)
        return 2
    if args.rounds < 2:
        print("error: --rounds must be >= 2 (the first round is dropped)", file=sys.stderr)
        return 2
    data = load_dataset(args.dataset)
    x, y = data.x_train[: args.limit], data.y_train[: args.limit]
    trainers = {r: build(r, x, y, args.seed, args.rounds) for r in args.recipes}
    times = {r: [] for r in args.recipes}
    cpu = {r: [] for r in args.recipes}
    for round_ in range(1, args.rounds + 1):
        for recipe, trainer in trainers.items():
            # fit() trains up to total_epochs (config.epochs resolved): one more per call.
            trainer.total_epochs = trainer.config.epochs = round_
            start = time.process_time()
            trainer.fit()
            # CPU seconds of all the process's threads: less sensitive than wall time to
            # other jobs on a shared machine.
            cpu[recipe].append(time.process_time() - start)
            times[recipe].append(trainer.history[-1]["time"])
            print(
                f"  round {round_} {recipe}: {times[recipe][-1]:.2f} s, "
                f"{cpu[recipe][-1]:.2f} CPU s",
                file=sys.stderr,
            )
    base = statistics.median(times[args.recipes[0]][1:])
    base_cpu = statistics.median(cpu[args.recipes[0]][1:])
    name = args.recipes[0]
    print(
        f"| {args.dataset} ({len(y)} samples) | s/epoch (median) | samples/s | vs {name} "
        f"| CPU s/epoch (median) | CPU vs {name} |"
    )
    print("|---|---|---|---|---|---|")
    for recipe in args.recipes:
        med = statistics.median(times[recipe][1:])
        med_cpu = statistics.median(cpu[recipe][1:])
        print(
            f"| {recipe} | {med:.2f} | {len(y) / med:,.0f} | {med / base:.2f}x "
            f"| {med_cpu:.2f} | {med_cpu / base_cpu:.2f}x |"
        )
    spread = {r: np.round(times[r][1:], 2).tolist() for r in args.recipes}
    print(f"\nepoch seconds after the first round: {spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
