#!/usr/bin/env python
"""The panel: the default recipe (and candidate recipes) against raw pixels on every set of
``bench/panel_data.py``, over several seeds, in one table.

Each run is ``run_train.py --dataset folder:SET`` in a subprocess, as a user would start
it; the figures are the **last epoch's** (nothing is selected on the split reported), and
raw pixels are the run's own baseline on the same split. Two splits:

``--split val`` (choosing recipes)
    Every set's *training* pictures only: a validation layout is carved from them with
    the set's protocol (closed: a fixed 20 % of each class; open: the last 30 % of the
    sorted training classes, never seen in training) and the run trains on the rest.
    The test pictures are not read.
``--split test`` (reporting, after the choice)
    The set's own train/test split.

Usage::

    python bench/panel_data.py                                # prepare the sets once
    python bench/panel.py --split val --recipes default pooled-bn --seeds 0
    python bench/panel.py --split test --seeds 0 1 2 --out bench/results/panel-test.jsonl

Each finished run appends one JSON line to ``--out`` (when given) and the table is printed
at the end, one row per set and recipe, with the mean and range over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from panel_data import DEFAULT_CACHE, PANEL  # noqa: E402

__all__ = ["RECIPES", "main", "run_one", "validation_layout"]

ROOT = os.path.dirname(HERE)

_POOLED_64 = {"block": "pooled", "channels": [16, 32, 64, 128], "pool": "avg"}

#: Recipes: name -> settings over the defaults, given to ``run_train.py`` as a JSON
#: ``--config`` (an ``architecture`` names the CNN's exact layers). ``default`` is nothing
#: at all; the others are the candidates measured for pictures above 32 px.
RECIPES: Dict[str, Dict[str, Any]] = {
    "default": {},
    "e30": {"epochs": 30},
    "s48": {"image_size": "48"},  # what a set whose epoch is over 200 megapixels gets
    "lr2w": {"lr": 0.002, "warmup_epochs": 0.3},  # a short-run candidate (with --epochs 3)
    "s64": {"image_size": "64", "model": "convnet"},
    "s64-lr3e-4": {"image_size": "64", "model": "convnet", "lr": 0.0003},
    "s64-photos": {"image_size": "64", "model": "convnet", "augment": "photos"},
    "s64-strided-bn": {"image_size": "64", "model": "cnn"},
    "s64-strided-bn-e30": {"image_size": "64", "model": "cnn", "epochs": 30},
    "s64-strided-bn-photos": {"image_size": "64", "model": "cnn", "augment": "photos"},
    "s64-pooled-bnlast": {
        "image_size": "64",
        "model": "cnn",
        "architecture": {**_POOLED_64, "batch_norm": True, "batch_norm_from": 4},
    },
    "s64-pooled-bn": {
        "image_size": "64",
        "model": "cnn",
        "architecture": {**_POOLED_64, "batch_norm": True, "batch_norm_from": 1},
    },
    "s64-pooled-bn-photos": {
        "image_size": "64",
        "model": "cnn",
        "augment": "photos",
        "architecture": {**_POOLED_64, "batch_norm": True, "batch_norm_from": 1},
    },
}

_METRICS = (
    "precision_at_1",
    "map_at_r",
    "recall_at_1",
    "recall_at_2",
    "recall_at_4",
    "recall_at_8",
)
_VAL_SEED = 20_261_206


def _classes(split_dir: str) -> List[str]:
    return sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))


def _files(class_dir: str) -> List[str]:
    return sorted(f for f in os.listdir(class_dir) if not f.startswith("."))


def validation_layout(set_root: str, protocol: str, out: str, fraction: float = 0.2) -> str:
    """A ``train``/``test`` folder of symbolic links made from ``set_root/train`` only.

    closed: a fixed ``fraction`` of every class (at least one picture, and at least one
    left to train on) becomes ``test``. open: the last 30 % of the sorted training
    classes (at least two) become ``test``, so its classes are never seen in training.
    """
    if os.path.isdir(out):
        return out
    train = os.path.join(set_root, "train")
    classes = _classes(train)
    rng = random.Random(_VAL_SEED)
    tmp = out + ".tmp"
    held = set(classes[-max(2, round(0.3 * len(classes))) :]) if protocol == "open" else set()
    for name in classes:
        files = _files(os.path.join(train, name))
        if protocol == "open":
            parts = {"test" if name in held else "train": files}
        else:
            shuffled = files[:]
            rng.shuffle(shuffled)
            k = min(max(1, round(fraction * len(files))), len(files) - 1)
            parts = {"test": sorted(shuffled[:k]), "train": sorted(shuffled[k:])}
        for split, chosen in parts.items():
            os.makedirs(os.path.join(tmp, split, name), exist_ok=True)
            for f in chosen:
                os.symlink(os.path.join(train, name, f), os.path.join(tmp, split, name, f))
    os.rename(tmp, out)
    return out


def run_one(
    dataset: str, recipe: Dict[str, Any], seed: int, epochs: Optional[int], workdir: str
) -> dict:
    """One training run; its last-epoch test figures, raw pixels, wall and train time."""
    name = f"run-{seed}-{int(time.time() * 1000)}"
    flags: List[str] = []
    if recipe:
        path = os.path.join(workdir, f"{name}.json")
        with open(path, "w") as f:
            json.dump(recipe, f)
        flags = ["--config", path]
    cmd = [
        sys.executable,
        os.path.join(ROOT, "run_train.py"),
        "--dataset",
        f"folder:{dataset}",
        "--seed",
        str(seed),
        "--logdir",
        workdir,
        "--run-name",
        name,
        "--no-plots",
        "--projector-samples",
        "0",
        *flags,
    ]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    result = {
        "wall_s": round(wall, 1),
        "exit": proc.returncode,
        "command": cmd[1:],
        "recipe_settings": recipe,
    }
    metrics_path = os.path.join(workdir, name, "metrics.json")
    if proc.returncode != 0 or not os.path.isfile(metrics_path):
        result["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return result
    with open(metrics_path) as f:
        metrics = json.load(f)
    with open(os.path.join(workdir, name, "config.json")) as f:
        config = json.load(f)
    last = metrics["history"][-1]
    result.update(
        epochs=last["epoch"],
        train_s=round(sum(h.get("time", 0.0) for h in metrics["history"]), 1),
        image_size=config.get("image_size"),
        input_shape=config.get("input_shape"),
        test={k: last["test"].get(k) for k in _METRICS},
        raw={k: metrics["raw_pixels"].get(k) for k in _METRICS},
        loss=last["train"].get("loss"),
        active=last["train"].get("active_fraction"),
        mean_an_dist=last["test"].get("mean_an_dist"),
        events=metrics.get("events", []),
        validation=_validation(metrics),
    )
    return result


def _validation(metrics: dict) -> Optional[dict]:
    """The validation split's size and the epoch it chose (highest validation MAP@R),
    with that epoch's test figures when it was scored; None without a validation split."""
    scored = [h for h in metrics["history"] if h.get("epoch", 0) > 0 and h.get("val")]
    if not scored:
        return None
    best = max(scored, key=lambda h: h["val"]["map_at_r"])
    return {
        "samples": metrics["dataset"].get("validation"),
        "mode": metrics["dataset"].get("validation_mode"),
        "best_epoch": best["epoch"],
        "best_val_map_at_r": best["val"]["map_at_r"],
        "last_val_map_at_r": scored[-1]["val"]["map_at_r"],
    }


def _fmt(values: List[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (
        f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def meets_targets(run: dict) -> bool:
    """The panel's targets for one run: MAP@R at least 1.5x raw pixels', P@1 at least raw
    pixels' (or at least 0.99 where raw pixels reach 0.99), and no collapse: the run
    finished, its test embedding is spread (mean anchor-negative distance over 0.05) and
    its last epoch's loss is not pinned at the margin with every triplet active."""
    if "test" not in run:
        return False
    test, raw = run["test"], run["raw"]
    p1_ok = test["precision_at_1"] >= min(raw["precision_at_1"], 0.99)
    pinned = (run.get("active") or 0.0) >= 0.999 and (run.get("loss") or 0.0) >= 0.99 * 0.2
    collapsed = (run.get("mean_an_dist") or 0.0) <= 0.05 or pinned
    return test["map_at_r"] >= 1.5 * raw["map_at_r"] and p1_ok and not collapsed


def table(rows: List[dict]) -> str:
    """Markdown: one line per (set, recipe), mean (range) over seeds, and how many seeds
    met the targets (:func:`meets_targets`)."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["recipe"]), []).append(r)
    lines = [
        "| set | recipe | size | raw P@1 | P@1 | raw MAP@R | MAP@R | MAP@R / raw "
        "| raw R@4 | R@4 | R@8 | train s | wall s | targets met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, recipe), runs in groups.items():
        ok = [r for r in runs if "test" in r]

        def get(part: str, key: str, ok: List[dict] = ok) -> str:
            return _fmt([r[part][key] for r in ok])

        ratio = [r["test"]["map_at_r"] / r["raw"]["map_at_r"] for r in ok]
        size = "x".join(str(d) for d in ok[0]["input_shape"]) if ok else "-"
        met = sum(meets_targets(r) for r in runs)
        lines.append(
            f"| {name} | {recipe} | {size} | {get('raw', 'precision_at_1')} "
            f"| {get('test', 'precision_at_1')} | {get('raw', 'map_at_r')} "
            f"| {get('test', 'map_at_r')} | {_fmt(ratio)} | {get('raw', 'recall_at_4')} "
            f"| {get('test', 'recall_at_4')} | {get('test', 'recall_at_8')} "
            f"| {_fmt([r['train_s'] for r in ok], 0)} | {_fmt([r['wall_s'] for r in runs], 0)} "
            f"| {met}/{len(runs)} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=DEFAULT_CACHE, help="where panel_data.py prepared the sets")
    p.add_argument("--sets", nargs="+", default=list(PANEL), choices=list(PANEL))
    p.add_argument("--recipes", nargs="+", default=["default"], choices=list(RECIPES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--out", help="append one JSON line per run to this file")
    p.add_argument(
        "--table", metavar="JSONL", help="print the table of the runs in this file; run nothing"
    )
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="panel-") as workdir:
        for name in args.sets:
            root = os.path.join(args.cache, name)
            if not os.path.isdir(os.path.join(root, "train")):
                print(
                    f"error: {root} is not prepared; run bench/panel_data.py --sets {name}",
                    file=sys.stderr,
                )
                return 2
            if args.split == "val":
                root = validation_layout(
                    root, PANEL[name].protocol, os.path.join(args.cache, f"{name}.val")
                )
            for recipe in args.recipes:
                for seed in args.seeds:
                    r = run_one(root, RECIPES[recipe], seed, args.epochs, workdir)
                    r.update(
                        set=name,
                        recipe=recipe,
                        seed=seed,
                        split=args.split,
                        date=time.strftime("%Y-%m-%d %H:%M"),
                        load=os.getloadavg()[0],
                    )
                    rows.append(r)
                    brief = (
                        (
                            f"P@1 {r['test']['precision_at_1']:.3f} (raw "
                            f"{r['raw']['precision_at_1']:.3f}) MAP@R {r['test']['map_at_r']:.3f} "
                            f"(raw {r['raw']['map_at_r']:.3f})"
                        )
                        if "test" in r
                        else r["error"]
                    )
                    print(f"{name} {recipe} seed {seed}: {brief}, {r['wall_s']} s", flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps(r) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
