"""Embedding quality of the training recipes, one table per dataset (not a test).

Trains each recipe with the package's own TripletTrainer and prints, per dataset, test
Precision@1, MAP@R, strict triplet accuracy and training wall time, plus how long the
recipe took to reach a P@1 target and its P@1 after a training-time budget:

    python bench/quality.py                                # fashion-mnist and mnist-5k
    python bench/quality.py --datasets mnist-5k --recipes raw default
    python bench/quality.py --split val                    # how the defaults were chosen
    python bench/quality.py --datasets mnist-5k --heldout sklearn-digits   # unseen digits
    python bench/quality.py --datasets folder:/tmp/bench-images/fashion-colour-10000 \
        --image-size 32                                    # the colour folder of bench/images.py

Recipes (every online one uses P x K batches and the default settings otherwise):

    raw         the flattened pixels, no training
    reference   the reference recipe (offline random triplets, MLP, SGD) = --preset reference
    batch-hard  MLP + batch-hard mining
    semi-hard   MLP + semi-hard mining
    batch-all   MLP + batch-all mining
    default     the package defaults (semi-hard, CNN for images, Adam, cosine schedule);
                what "default" meant changed each time a default changed

Candidates for the defaults (each is the default recipe with one change; the figures
and decisions are in bench/results/quality-fashion.md):

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

Augmentation and the pooled CNN:

    strided             --conv-block strided (the CNN default before the pooled one)
    aug-digits, aug-objects, aug-photos   --augment digits / objects / photos
    bn-lr3, bn-lr10     --batch-norm --lr 0.003 / 0.01
    p3                  --conv-block pooled (16 32 64, no BatchNorm: the first pooled default)
    p3-digits, p3-objects, p3-lr2, p3-bn-lr3, ...   the pooled CNN with those changes

BatchNorm where the maps are small, at the old cost:

    p3-bn3              pooled CNN 16 32 64, BatchNorm on its 3rd (last) convolution only:
                        the default before the last convolution was widened to 128
    p3-bn2-lr3, p3-bn3-lr3, p3-bn3-lr5   BatchNorm from the 2nd / 3rd convolution, lr
    p3-lr3              the pooled CNN without BatchNorm, lr 0.003
    p3-bn3-lr3-m1, -m3, -k32, -h256      margin 0.1 / 0.3, K = 32, a hidden Dense 256
    p3-bn3-digits, p3-bn3-lr3-digits     with --augment digits
    p3m-bn3, p3m-bn3-lr3                 widths 16 40 80 (about the whole CPU budget)

The net: BatchNorm's first-convolution gain bought cheaper, multiply-adds re-spent (the
options built for it lost and did not land: --input-norm, --weight-init and --conv-block
stem and their recipes are on the unmerged branch fashion-b-options):

    p3c8-bn, p3c8-bn-lr3       widths 8 32 64, BatchNorm on every convolution, lr
    p4-bn3, p4-bn3-lr3         widths 16 32 64 64: a 4th convolution at 4x4 (pooled to
                               2x2), BatchNorm on the 3rd and 4th
    p3-bn3-e64, p3-bn3-e256    embedding size 64 / 256
    pf-bn, pf-bn-lr3           --pool-first --batch-norm (conv -> max-pool -> BatchNorm ->
                               ReLU, BatchNorm on all three), lr 1e-3 / 3e-3; pf-bn-lr3
                               is the recipe chosen for 3 passes on Fashion-MNIST
    pf-bn3                     --pool-first, BatchNorm on the last convolution only

The training side (p3-bn3's net):

    p3-bn3-k8, p3-bn3-k12    K = 8 / 12 samples per class (P = 10): more updates per pass
    p3-bn3-wd1, p3-bn3-wd5   --weight-decay 1e-4 / 5e-4 (Adam's L2 penalty)
    p3-bn3-lr2w              --lr 0.002 --warmup-epochs 0.3
    p3-bn3-ema99, -ema998, -ema999   --ema-decay 0.99 / 0.998 / 0.999 (weight averaging)
    p3-bn3-const-ema998      --lr-schedule constant --ema-decay 0.998 (the average in
                             place of the cosine decay)
    p3-bn3-lr2w-const-ema998 the two above together

Short-run candidates on today's net (run with ``--epochs 3``, ``5``, ``10``); since they
were measured, runs of at most 5 epochs resolve ``default`` to ``lr2w``'s rate and warm-up:

    lr2, w03, lr2w           --lr 0.002 / --warmup-epochs 0.3 / both
    const-ema998             --lr-schedule constant --ema-decay 0.998
    mlp-lr2w                 semi-hard's MLP with --lr 0.002 --warmup-epochs 0.3

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

from gluon_triplet.config import PRESETS, REMOVED_KEYS, Config  # noqa: E402
from gluon_triplet.data.datasets import load_dataset  # noqa: E402
from gluon_triplet.data.triplets import TripletDataset, create_pairs  # noqa: E402
from gluon_triplet.evaluation.clustering import clustering_metrics  # noqa: E402
from gluon_triplet.evaluation.metrics import evaluate_embeddings  # noqa: E402
from gluon_triplet.nets.architectures import legacy_cnn_architecture  # noqa: E402
from gluon_triplet.nets.embed import embed  # noqa: E402
from gluon_triplet.nets.zoo import model_from_config  # noqa: E402
from gluon_triplet.training.callbacks import Callback  # noqa: E402
from gluon_triplet.training.trainer import TripletTrainer, resolve_contexts, set_seed  # noqa: E402

# The default net before its last convolution was widened (16 32 64, BatchNorm on the
# last); the training-side candidates change only training.
_P3_BN3 = {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 3}

RECIPES = {
    "raw": None,
    "reference": dict(PRESETS["reference"]),
    "batch-hard": {"model": "mlp", "miner": "batch-hard"},
    "semi-hard": {"model": "mlp", "miner": "semi-hard"},
    "batch-all": {"model": "mlp", "miner": "batch-all"},
    "default": {},
    # The CNN default before the pooled one (5x5 stride-2 convolutions).
    "strided": {"conv_block": "strided"},
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
    # Augmentation and a stronger CNN at the same cost.
    "aug-digits": {"augment": "digits"},
    "aug-photos": {"augment": "photos"},
    "aug-objects": {"augment": "objects"},
    "bn-lr3-objects": {"batch_norm": True, "lr": 0.003, "augment": "objects"},
    "bn-lr3-digits": {"batch_norm": True, "lr": 0.003, "augment": "digits"},
    "lr2": {"lr": 0.002},
    "lr2w": {"lr": 0.002, "warmup_epochs": 0.3},  # a short-run candidate on today's net
    "w03": {"warmup_epochs": 0.3},
    "mlp-lr2w": {"model": "mlp", "miner": "semi-hard", "lr": 0.002, "warmup_epochs": 0.3},
    "const-ema998": {"lr_schedule": "constant", "ema_decay": 0.998},
    "p3": {"conv_block": "pooled", "batch_norm": False},  # 16 32 64, the first pooled default
    "p3-lr2": {"conv_block": "pooled", "batch_norm": False, "lr": 0.002},
    "p3-digits": {"conv_block": "pooled", "batch_norm": False, "augment": "digits"},
    "p3-objects": {"conv_block": "pooled", "batch_norm": False, "augment": "objects"},
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
    "p3n-bn-lr3": {
        "conv_block": "pooled",
        "channels": (12, 24, 48),
        "batch_norm": True,
        "lr": 0.003,
    },
    "p3n-bn-lr3-objects": {
        "conv_block": "pooled",
        "channels": (12, 24, 48),
        "batch_norm": True,
        "lr": 0.003,
        "augment": "objects",
    },
    "p3w-bn-lr3": {
        "conv_block": "pooled",
        "channels": (20, 40, 80),
        "batch_norm": True,
        "lr": 0.003,
    },
    # BatchNorm only where the maps are small, at the lean loop's cost.
    "p3-bn2-lr3": {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 2, "lr": 0.003},
    "p3-bn3-lr3": {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 3, "lr": 0.003},
    "p3-lr3": {"conv_block": "pooled", "batch_norm": False, "lr": 0.003},
    "p3-bn3": {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 3},
    "p3-bn3-digits": {
        "conv_block": "pooled",
        "batch_norm": True,
        "batch_norm_from": 3,
        "augment": "digits",
    },
    "p3-bn3-lr3-digits": {
        "conv_block": "pooled",
        "batch_norm": True,
        "batch_norm_from": 3,
        "lr": 0.003,
        "augment": "digits",
    },
    "p3m-bn3": {"conv_block": "pooled", "channels": (16, 40, 80), "batch_norm_from": 3},
    "p3m-bn3-lr3": {
        "conv_block": "pooled",
        "channels": (16, 40, 80),
        "batch_norm_from": 3,
        "lr": 0.003,
    },
    "p3-bn3-lr5": {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 3, "lr": 0.005},
    "p3-bn3-lr3-h256": {
        "conv_block": "pooled",
        "batch_norm": True,
        "batch_norm_from": 3,
        "lr": 0.003,
        "hidden": (256,),
    },
    "p3-bn3-lr3-m1": {
        "conv_block": "pooled",
        "batch_norm": True,
        "batch_norm_from": 3,
        "lr": 0.003,
        "margin": 0.1,
    },
    "p3-bn3-lr3-m3": {
        "conv_block": "pooled",
        "batch_norm": True,
        "batch_norm_from": 3,
        "lr": 0.003,
        "margin": 0.3,
    },
    "p3-bn3-lr3-k32": {
        "conv_block": "pooled",
        "batch_norm": True,
        "batch_norm_from": 3,
        "lr": 0.003,
        "pk_samples": 32,
    },
    "p3-bn2": {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 2},
    "p3-bn2-lr5": {"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 2, "lr": 0.005},
    "p3-bn-lr5": {"conv_block": "pooled", "batch_norm": True, "lr": 0.005},
    "p3-bn-lr10": {"conv_block": "pooled", "batch_norm": True, "lr": 0.01},
    # The net: BatchNorm's gain on the first convolution, cheaper,
    # and the same multiply-adds spent elsewhere.
    "p3c8-bn": {"conv_block": "pooled", "channels": (8, 32, 64), "batch_norm": True},
    "p3c8-bn-lr3": {
        "conv_block": "pooled",
        "channels": (8, 32, 64),
        "batch_norm": True,
        "lr": 0.003,
    },
    "p4-bn3": {"conv_block": "pooled", "channels": (16, 32, 64, 64), "batch_norm_from": 3},
    "p4-bn3-lr3": {
        "conv_block": "pooled",
        "channels": (16, 32, 64, 64),
        "batch_norm_from": 3,
        "lr": 0.003,
    },
    "p3-bn3-e64": {"conv_block": "pooled", "batch_norm_from": 3, "embedding_size": 64},
    "p3-bn3-e256": {"conv_block": "pooled", "batch_norm_from": 3, "embedding_size": 256},
    "pf-bn": {"conv_block": "pooled", "batch_norm": True, "pool_first": True},
    "pf-bn-lr3": {"conv_block": "pooled", "batch_norm": True, "pool_first": True, "lr": 0.003},
    "pf-bn3": {"conv_block": "pooled", "batch_norm_from": 3, "pool_first": True},
    "bn-lr3": {"batch_norm": True, "lr": 0.003},
    "bn-lr10": {"batch_norm": True, "lr": 0.01},
    # The training side: more updates per epoch, weight decay, lr with a
    # warm-up, weight averaging; the net is p3-bn3's.
    "p3-bn3-k8": {**_P3_BN3, "pk_samples": 8},
    "p3-bn3-k12": {**_P3_BN3, "pk_samples": 12},
    "p3-bn3-wd1": {**_P3_BN3, "weight_decay": 1e-4},
    "p3-bn3-wd5": {**_P3_BN3, "weight_decay": 5e-4},
    "p3-bn3-lr2w": {**_P3_BN3, "lr": 0.002, "warmup_epochs": 0.3},
    "p3-bn3-ema99": {**_P3_BN3, "ema_decay": 0.99},
    "p3-bn3-ema998": {**_P3_BN3, "ema_decay": 0.998},
    "p3-bn3-ema999": {**_P3_BN3, "ema_decay": 0.999},
    "p3-bn3-const-ema998": {**_P3_BN3, "lr_schedule": "constant", "ema_decay": 0.998},
    "p3-bn3-lr2w-const-ema998": {
        **_P3_BN3,
        "lr": 0.002,
        "warmup_epochs": 0.3,
        "lr_schedule": "constant",
        "ema_decay": 0.998,
    },
    # How P@1 after 10 epochs grows with the net's width, against
    # its cost per sample (the budget's edge and well past it).
    "p3-bn3-c96": {**_P3_BN3, "channels": (16, 32, 96)},
    "p3-bn3-c128": {**_P3_BN3, "channels": (16, 32, 128)},
    "pf-bn-c128": {**_P3_BN3, "channels": (16, 32, 128), "pool_first": True, "batch_norm_from": 1},
    "p3-bn3-w24": {**_P3_BN3, "channels": (24, 48, 96)},
    "p3-bn-w32": {**_P3_BN3, "channels": (32, 64, 128), "batch_norm_from": 1},
    "p3-bn3-c128-digits": {**_P3_BN3, "channels": (16, 32, 128), "augment": "digits"},
    "p3-bn3-c128-lr3-digits": {
        **_P3_BN3,
        "channels": (16, 32, 128),
        "lr": 0.003,
        "augment": "digits",
    },
}


def _recorded_net(recipe):
    """A recipe written with the CNN options of its time (``conv_block``, ``channels``,
    ``batch_norm``, ``batch_norm_from``, ``pool_first``, since replaced by named
    architectures) as the Config overrides of today: the same settings with
    ``model`` and the ``architecture`` those options built on the 28 x 28 pictures every
    recipe ran on, so that each name keeps meaning the net its figures in
    bench/results/quality-fashion.md came from. The options' defaults are those of the
    recipes' time: no conv_block is the strided CNN (the default until the pooled one,
    which every recipe after it names), no batch_norm the automatic choice (BatchNorm on
    the pooled CNN's last convolution, none on the strided), and pooled widths 16 32 64
    (the default until the last convolution was widened to 128)."""
    old = {key: recipe.pop(key) for key in REMOVED_KEYS if key in recipe}
    if not old:
        return recipe
    settings = {"conv_block": "strided", "batch_norm": None, **old}
    if settings["conv_block"] == "pooled":
        settings.setdefault("channels", (16, 32, 64))
    architecture = legacy_cnn_architecture(settings, (28, 28))
    model = "convnet" if architecture["block"] == "strided" else "cnn"
    return {"model": model, "architecture": architecture, **recipe}


RECIPES = {
    name: recipe if recipe is None else _recorded_net(dict(recipe))
    for name, recipe in RECIPES.items()
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


def load_split(name, split, seed, image_size=None):
    images = None
    if image_size:
        from gluon_triplet.data.decoding import ImageOptions

        images = ImageOptions(size=(image_size, image_size))
    data = load_dataset(name, images=images)
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


def sklearn_digits():
    """scikit-learn's 1,797 handwritten digits (UCI optdigits: 8x8, 17 grey levels, other
    writers than MNIST's), drawn as MNIST draws its digits: the 8x8 picture scaled to a
    20x20 box (bilinear) and centred on 28x28 by its centre of mass, values in [0, 1].

    Digits a net trained on mnist-5k has never seen, from another collection: the
    held-out check of generalisation (``--heldout sklearn-digits``).
    """
    from PIL import Image
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    bunch = load_digits()
    out = np.zeros((len(bunch.images), 28, 28), np.float32)
    for i, small in enumerate(bunch.images.astype(np.float32) / 16.0):
        box = np.asarray(Image.fromarray(small, "F").resize((20, 20), Image.BILINEAR))
        box = np.clip(box, 0.0, 1.0)
        rows, cols = np.indices(box.shape)
        mass = box.sum() or 1.0
        cy, cx = (rows * box).sum() / mass, (cols * box).sum() / mass
        top = int(np.clip(round(14 - cy), 0, 8))
        left = int(np.clip(round(14 - cx), 0, 8))
        out[i, top : top + 20, left : left + 20] = box
    return out, bunch.target.astype(np.int64)


HELDOUT = {"sklearn-digits": sklearn_digits}


def score(emb, y, seed):
    """Retrieval, strict triplet accuracy and NMI of ``(N, D)`` embeddings of ``y``."""
    scores = dict(evaluate_embeddings(emb, y, triplets=create_pairs(y, seed=seed, warn=False)))
    scores.update(clustering_metrics(emb, y, seed=seed))
    return scores


def run_recipe(recipe, overrides, x_train, y_train, x_eval, y_eval, args, heldout=None):
    """Train ``recipe``; returns (scores, training seconds, per-epoch points, held-out
    scores or None). ``heldout`` is ``(x, y)`` embedded by the trained net at the end."""
    eval_triplets = create_pairs(y_eval, seed=args.seed, warn=False)
    if overrides is None:
        start = time.perf_counter()
        scores = score(x_eval.reshape(len(x_eval), -1), y_eval, args.seed)
        held = None
        if heldout is not None:
            held = score(heldout[0].reshape(len(heldout[0]), -1), heldout[1], args.seed)
        return scores, time.perf_counter() - start, [], held
    # Every epoch scores the evaluation split whole: the study's curves are per epoch.
    values = {"eval_every": 1, "eval_samples": 0, **overrides, "seed": args.seed}
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
    prepare = getattr(net, "prepare_input", lambda a: a)
    scores = dict(trainer.history[-1]["test"])
    scores.update(clustering_metrics(embed(net, prepare(x_eval)), y_eval, seed=args.seed))
    held = None
    if heldout is not None:
        held = score(embed(net, prepare(heldout[0])), heldout[1], args.seed)
    return scores, clock.seconds, clock.points, held


def time_to(points, target, key="precision_at_1"):
    for seconds, scores in points:
        if scores[key] >= target:
            return seconds
    return None


def epochs_to(points, target, key="precision_at_1"):
    for epoch, (_, scores) in enumerate(points, start=1):
        if scores[key] >= target:
            return epoch
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
    p.add_argument(
        "--heldout",
        choices=list(HELDOUT),
        help="also embed this other dataset with each trained net and score it (digits "
        "never seen in training: generalisation)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help="folder:/rec: datasets: pictures resized to this side (default: chosen from the data)",
    )
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    heldout = HELDOUT[args.heldout]() if args.heldout else None

    rows = []
    for name in args.datasets:
        x_train, y_train, x_eval, y_eval = load_split(name, args.split, args.seed, args.image_size)
        print(
            f"{name}: train {len(y_train)}, {args.split} {len(y_eval)}", file=sys.stderr, flush=True
        )
        for recipe in args.recipes:
            scores, seconds, points, held = run_recipe(
                recipe, RECIPES[recipe], x_train, y_train, x_eval, y_eval, args, heldout
            )
            rows.append(
                {
                    "dataset": name,
                    "split": args.split,
                    "recipe": recipe,
                    "precision_at_1": scores["precision_at_1"],
                    "map_at_r": scores["map_at_r"],
                    "nmi": scores.get("nmi"),
                    "triplet_accuracy": scores["triplet_accuracy"],
                    "heldout": None
                    if held is None
                    else {
                        "name": args.heldout,
                        **{
                            k: held[k]
                            for k in ("precision_at_1", "map_at_r", "nmi", "triplet_accuracy")
                        },
                    },
                    "epochs_to_target": epochs_to(points, args.target),
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
        f"| data ({args.split}) | recipe | P@1 | MAP@R | NMI | triplet acc | train s | s/epoch "
        f"| epochs | epochs to P@1 {args.target} | s to P@1 {args.target} "
        f"| P@1 at {args.budget:g} s | s to acc {args.acc_target} |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['recipe']} | {r['precision_at_1']:.4f} | "
            f"{r['map_at_r']:.4f} | {_fmt(r['nmi'], '.4f')} | {r['triplet_accuracy']:.4f} | "
            f"{r['train_seconds']:.1f} | {r['seconds_per_epoch']:.2f} | "
            f"{r['epochs']} | {_fmt(r['epochs_to_target'], 'd')} | "
            f"{_fmt(r['seconds_to_target'], '.1f')} | "
            f"{_fmt(r['precision_at_1_at_budget'], '.4f')} | "
            f"{_fmt(r['seconds_to_acc_target'], '.1f')} |"
        )
    held = [r for r in rows if r["heldout"]]
    if held:
        print(f"\nheld out: {args.heldout} (never seen in training), scored alone")
        print("| trained on | recipe | P@1 | MAP@R | NMI | triplet acc |")
        print("|---|---|---|---|---|---|")
        for r in held:
            h = r["heldout"]
            print(
                f"| {r['dataset']} ({args.split}) | {r['recipe']} | {h['precision_at_1']:.4f} | "
                f"{h['map_at_r']:.4f} | {h['nmi']:.4f} | {h['triplet_accuracy']:.4f} |"
            )


if __name__ == "__main__":
    sys.exit(main())
