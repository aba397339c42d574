"""Embedding quality of the training recipes, one table per dataset (not a test).

Trains each recipe with the package's own TripletTrainer and prints, per dataset, test
Precision@1, MAP@R, strict triplet accuracy and training wall time, plus how long the
recipe took to reach a P@1 target and its P@1 after a training-time budget:

    python bench/quality.py                                # fashion-mnist and mnist-5k
    python bench/quality.py --datasets mnist-5k --recipes raw default
    python bench/quality.py --split val                    # how the defaults were chosen

Recipes (every online one uses P x K batches and the default settings otherwise):

    raw         the flattened pixels, no training
    reference   the reference recipe (offline random triplets, MLP, SGD) = --preset reference
    batch-hard  MLP + batch-hard mining
    semi-hard   MLP + semi-hard mining
    batch-all   MLP + batch-all mining
    default     the package defaults (semi-hard, CNN for images, Adam, cosine schedule)

Candidates for the defaults (issue 15; each is the default recipe with one change):

    distance-weighted   --miner distance-weighted (Wu et al. 2017)
    dw-bn               distance-weighted + --batch-norm
    hard                --miner batch-hard (with the default net, CNN for images)
    hard-soft           --miner batch-hard --soft-margin (Hermans et al. 2017)
    hard-warmup         --miner batch-hard --warmup-epochs 1
    hard-soft-warmup    --miner batch-hard --soft-margin --warmup-epochs 1
    hard-soft-k4        --miner batch-hard --soft-margin -K 4 (the paper's K; P = 10 classes)
    hard-soft-k8        --miner batch-hard --soft-margin -K 8
    hard-k4             --miner batch-hard -K 4 (hinge)
    hard-soft-raw       --miner batch-hard --soft-margin --no-normalize (as in the paper)
    hard-soft-raw-k4    the same with K = 4 samples per class
    warmup              --warmup-epochs 1
    soft                --soft-margin (semi-hard mining)
    bn                  --batch-norm (BatchNorm after each convolution)
    bn-wide             --batch-norm --channels 48 64
    bn-e64              --batch-norm --embedding-size 64

``--split test`` (default) trains on the train split and scores the test split.
``--split val`` never touches the test split: it carves a stratified validation split
out of train (1/6 of Fashion-MNIST's 60k = 10k; 20% of mnist-5k's 4k = 800), trains on
the rest and scores the validation split. The defaults were picked that way.

Wall time counts training epochs only (the per-epoch evaluation is excluded); the first
epoch includes graph construction. Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402

from gluon_triplet.callbacks import Callback  # noqa: E402
from gluon_triplet.config import PRESETS, Config  # noqa: E402
from gluon_triplet.data import load_dataset  # noqa: E402
from gluon_triplet.metrics import evaluate_embeddings  # noqa: E402
from gluon_triplet.model import model_from_config  # noqa: E402
from gluon_triplet.train import TripletTrainer, resolve_contexts, set_seed  # noqa: E402
from gluon_triplet.triplets import TripletDataset, create_pairs  # noqa: E402

RECIPES = {
    "raw": None,
    "reference": dict(PRESETS["reference"]),
    "batch-hard": {"model": "mlp", "miner": "batch-hard"},
    "semi-hard": {"model": "mlp", "miner": "semi-hard"},
    "batch-all": {"model": "mlp", "miner": "batch-all"},
    "default": {},
    "distance-weighted": {"miner": "distance-weighted"},
    "dw-bn": {"miner": "distance-weighted", "batch_norm": True},
    "hard": {"miner": "batch-hard"},
    "hard-soft": {"miner": "batch-hard", "soft_margin": True},
    "hard-warmup": {"miner": "batch-hard", "warmup_epochs": 1},
    "hard-soft-warmup": {"miner": "batch-hard", "soft_margin": True, "warmup_epochs": 1},
    "hard-soft-k4": {"miner": "batch-hard", "soft_margin": True, "pk_samples": 4},
    "hard-soft-k8": {"miner": "batch-hard", "soft_margin": True, "pk_samples": 8},
    "hard-k4": {"miner": "batch-hard", "pk_samples": 4},
    "hard-soft-raw": {"miner": "batch-hard", "soft_margin": True, "normalize": False},
    "hard-soft-raw-k4": {
        "miner": "batch-hard",
        "soft_margin": True,
        "normalize": False,
        "pk_samples": 4,
    },
    "warmup": {"warmup_epochs": 1},
    "soft": {"soft_margin": True},
    "bn": {"batch_norm": True},
    "bn-wide": {"batch_norm": True, "channels": (48, 64)},
    "bn-e64": {"batch_norm": True, "embedding_size": 64},
    # Issue 15, second session: augmentation and a stronger CNN at the same cost.
    "aug-digits": {"augment": "digits"},
    "aug-photos": {"augment": "photos"},
    "aug-objects": {"augment": "objects"},
    "p3": {"conv_block": "pooled", "channels": (16, 32, 64)},
    "p3-bn": {"conv_block": "pooled", "channels": (16, 32, 64), "batch_norm": True},
    "p3-bn-lr3": {
        "conv_block": "pooled",
        "channels": (16, 32, 64),
        "batch_norm": True,
        "lr": 0.003,
    },
    "p4-bn-lr3": {
        "conv_block": "pooled",
        "channels": (16, 32, 64, 128),
        "batch_norm": True,
        "lr": 0.003,
    },
    "p3w-bn-lr3": {
        "conv_block": "pooled",
        "channels": (20, 40, 80),
        "batch_norm": True,
        "lr": 0.003,
    },
    "bn-lr3": {"batch_norm": True, "lr": 0.003},
    "bn-lr10": {"batch_norm": True, "lr": 0.01},
}
# The recipes a plain run trains; the candidates are asked for by name (--recipes).
STANDARD = ["raw", "reference", "batch-hard", "semi-hard", "batch-all", "default"]


def stratified_split(y, fraction, seed):
    """Indices ``(keep, held_out)``: ``fraction`` of every class held out."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        held.append(members[: int(round(len(members) * fraction))])
    held = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(y)), held)
    return keep, held


def load_split(name, split, seed):
    data = load_dataset(name)
    if split == "test":
        return data.x_train, data.y_train, data.x_test, data.y_test
    fraction = 1 / 6 if len(data.y_train) >= 30000 else 0.2
    keep, held = stratified_split(data.y_train, fraction, seed)
    return data.x_train[keep], data.y_train[keep], data.x_train[held], data.y_train[held]


class _Clock(Callback):
    """Cumulative training time and test P@1 after each epoch."""

    def __init__(self):
        self.points = []  # (training seconds so far, epoch record)
        self.seconds = 0.0

    def on_epoch_end(self, trainer):
        record = trainer.history[-1]
        self.seconds += record["time"]
        self.points.append((self.seconds, record["test"]))
        print(
            f"    epoch {record['epoch']:2d}  {self.seconds:6.1f}s  "
            f"P@1 {record['test']['precision_at_1']:.4f}  "
            f"loss {record['train']['loss']:.4f}",
            file=sys.stderr,
            flush=True,
        )


def run_recipe(recipe, overrides, x_train, y_train, x_eval, y_eval, args):
    eval_triplets = create_pairs(y_eval, seed=args.seed, warn=False)
    if overrides is None:
        start = time.perf_counter()
        scores = evaluate_embeddings(
            x_eval.reshape(len(x_eval), -1), y_eval, triplets=eval_triplets
        )
        return scores, time.perf_counter() - start, []
    values = {**overrides, "seed": args.seed}
    if args.epochs is not None:
        values["epochs"] = args.epochs
        if values.get("warmup_epochs", 0) >= args.epochs:
            values["warmup_epochs"] = args.epochs / 4
    config = Config(**values)
    set_seed(config.seed)
    contexts = resolve_contexts("auto")
    net, model = model_from_config(config, x_train.shape[1:], ctx=contexts)
    print(f"  {recipe}: model {model}, miner {config.miner}", file=sys.stderr, flush=True)
    clock = _Clock()
    trainer = TripletTrainer(
        net,
        TripletDataset(x_train, y_train, seed=config.seed),
        config,
        contexts,
        test_x=x_eval,
        test_y=y_eval,
        test_triplets=eval_triplets,
        callbacks=[clock],
    )
    trainer.fit()
    return trainer.history[-1]["test"], clock.seconds, clock.points


def time_to(points, target, key="precision_at_1"):
    for seconds, scores in points:
        if scores[key] >= target:
            return seconds
    return None


def at_budget(points, budget):
    within = [scores["precision_at_1"] for seconds, scores in points if seconds <= budget]
    return within[-1] if within else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist-5k"])
    p.add_argument("--recipes", nargs="+", default=STANDARD, choices=list(RECIPES))
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs (default: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=60.0, help="seconds of training (default 60)")
    p.add_argument("--target", type=float, default=0.88, help="P@1 to time (default 0.88)")
    p.add_argument(
        "--acc-target",
        type=float,
        default=0.935,
        help="strict triplet accuracy to time (default 0.935, the reference recipe's "
        "10-epoch Fashion-MNIST figure)",
    )
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    rows = []
    for name in args.datasets:
        x_train, y_train, x_eval, y_eval = load_split(name, args.split, args.seed)
        print(
            f"{name}: train {len(y_train)}, {args.split} {len(y_eval)}", file=sys.stderr, flush=True
        )
        for recipe in args.recipes:
            scores, seconds, points = run_recipe(
                recipe, RECIPES[recipe], x_train, y_train, x_eval, y_eval, args
            )
            rows.append(
                {
                    "dataset": name,
                    "split": args.split,
                    "recipe": recipe,
                    "precision_at_1": scores["precision_at_1"],
                    "map_at_r": scores["map_at_r"],
                    "triplet_accuracy": scores["triplet_accuracy"],
                    "train_seconds": seconds if points else 0.0,
                    "epochs": len(points),
                    # Every recipe's epoch is one pass over the training samples.
                    "seconds_per_epoch": seconds / len(points) if points else 0.0,
                    "seconds_to_target": time_to(points, args.target),
                    "seconds_to_acc_target": time_to(
                        points, args.acc_target, key="triplet_accuracy"
                    ),
                    "precision_at_1_at_budget": at_budget(points, args.budget),
                }
            )
    print_table(rows, args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return 0


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(rows, args):
    head = (
        f"| data ({args.split}) | recipe | P@1 | MAP@R | triplet acc | train s | s/epoch | epochs "
        f"| s to P@1 {args.target} | P@1 at {args.budget:g} s | s to acc {args.acc_target} |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['recipe']} | {r['precision_at_1']:.4f} | "
            f"{r['map_at_r']:.4f} | {r['triplet_accuracy']:.4f} | {r['train_seconds']:.1f} | "
            f"{r['seconds_per_epoch']:.2f} | "
            f"{r['epochs']} | {_fmt(r['seconds_to_target'], '.1f')} | "
            f"{_fmt(r['precision_at_1_at_budget'], '.4f')} | "
            f"{_fmt(r['seconds_to_acc_target'], '.1f')} |"
        )


if __name__ == "__main__":
    sys.exit(main())
