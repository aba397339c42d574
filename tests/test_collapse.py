"""Collapse is never silent; the best epoch is chosen on validation; open sets are named.

Whole runs go through the command line on tiny generated pictures: 6 classes of 48 x 48
colour pictures, each class a smooth random pattern under heavy noise. On these, the
default recipe with ``--lr 10`` collapses in its first epoch (every test embedding within
0.002 of each other, every test triplet active) and, before the collapse guard, still
ended with exit status 0, its test P@1 below the raw pixels'.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gluon_triplet.data.validation import carve_validation, split_rows
from gluon_triplet.training.callbacks import Callback, best_record, collapse_reason
from gluon_triplet.training.collapse import (
    probe_collapse_reason,
    probe_spread,
    rewind,
    snapshot,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = type("C", (), {"margin": 0.2, "soft_margin": False})()


def write_pictures(root, classes, per_class=30, size=48, seed=0, same=False):
    """Noisy class patterns; ``same``: every picture of every class the same grey."""
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(os.path.join(root, name))
        small = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        pattern = np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR), float)
        for i in range(per_class):
            noisy = pattern * rng.uniform(0.6, 1.2) + rng.normal(0, 50, (size, size, 3))
            if same:
                noisy = np.full((size, size, 3), 128.0)
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
                os.path.join(root, name, f"{i}.png")
            )


def train(tmp, data, *flags, name="run"):
    cmd = [sys.executable, "-m", "gluon_triplet", "--dataset", f"folder:{data}"]
    cmd += ["--no-plots", "--projector-samples", "0", "--workers", "0", "--epochs", "4"]
    cmd += ["--logdir", str(tmp / "logs"), "--run-name", name, "--seed", "0", *flags]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    metrics_path = tmp / "logs" / name / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    return proc, metrics


def evaluate_cli(*args):
    """``gluon-triplet evaluate ARGS`` in a subprocess, as a user runs it."""
    cmd = [sys.executable, "-m", "gluon_triplet", "evaluate", *args]
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures") / "six"
    write_pictures(str(root), [f"c{i}" for i in range(6)])
    return root


def test_probe_signs():
    rng = np.random.default_rng(0)
    spread_out = rng.normal(size=(64, 8))
    spread_out /= np.linalg.norm(spread_out, axis=1, keepdims=True)
    one_point = np.tile(spread_out[:1], (64, 1)) + 1e-4 * rng.normal(size=(64, 8))
    near = np.tile(spread_out[:1], (64, 1)) + 0.02 * rng.normal(size=(64, 8))
    pinned = {"loss": 0.1995, "active_fraction": 1.0}
    learning = {"loss": 0.15, "active_fraction": 0.9}
    assert "same point" in probe_collapse_reason(one_point, learning, CONFIG)
    assert "pinned at the margin" in probe_collapse_reason(near, pinned, CONFIG)
    assert probe_collapse_reason(near, learning, CONFIG) is None
    assert probe_collapse_reason(spread_out, pinned, CONFIG) is None
    # Brute force: the mean squared distance over every ordered pair of two samples.
    d = ((near[:, None] - near[None]) ** 2).sum(-1)
    assert probe_spread(near)[0] == pytest.approx(d.sum() / (64 * 63))


@pytest.mark.parametrize("warmup, advised", [(0.0, True), (0.3, True), (1.0, False)])
def test_collapse_advice_suggests_a_warmup_only_where_the_run_had_a_shorter_one(warmup, advised):
    from gluon_triplet.config import Config
    from gluon_triplet.training.collapse_signs import collapse_advice

    advice = collapse_advice(Config(lr=0.002, epochs=4, warmup_epochs=warmup))
    assert advice[0] == "a lower --lr (e.g. --lr 0.0002)"
    assert ("--warmup-epochs 1" in advice) is advised


def test_a_collapsing_recipe_recovers_or_exits_non_zero(tmp_path, pictures):
    # --eval-every 1: every epoch scores the test split, the chosen one included
    flags = ("--lr", "10", "--log-every", "1", "--eval-every", "1")
    proc, metrics = train(tmp_path, pictures, *flags)
    assert "Traceback" not in proc.stderr
    events = metrics["events"]  # recorded either way
    first = events[0]
    assert first["epoch"] in (1, 2) and first["batch"] >= 1
    assert "pinned at the margin" in first["reason"] or "same point" in first["reason"]
    assert first["action"].startswith("rewound to the weights of the start of epoch 1")
    assert "the embedding collapsed" in proc.stderr
    if proc.returncode == 0:  # recovered: a useful embedding, chosen on validation
        best = metrics["best"]
        for split in ("val", "test"):
            assert collapse_reason(best[split], 0.2) is None
        assert best["test"]["precision_at_1"] >= 0.9
        assert "chosen on validation" in proc.stdout
    else:
        assert proc.returncode == 2 and proc.stdout == ""
        (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
        assert "collapsed" in line and "--lr" in line
        assert proc.stderr.rstrip().endswith(line)


def test_a_run_that_cannot_recover_exits_non_zero_with_new_advice(tmp_path):
    # Every picture the same: every embedding is one point, whatever the weights.
    data = tmp_path / "same"
    write_pictures(str(data), [f"c{i}" for i in range(4)], per_class=10, same=True)
    proc, metrics = train(tmp_path, data, "--log-every", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "done:" not in proc.stdout
    line = proc.stderr.rstrip().splitlines()[-1]
    assert line.startswith("error: the embedding ") and "collapsed" in line
    advice = line.split("; try ", 1)[1]
    assert "--lr" in advice and "--warmup-epochs 1" in advice
    # Never advice to set what is already the default.
    for default in ("--normalize", "--output linear", "--miner semi-hard"):
        assert default not in advice
    # Recorded, with what was tried, and nothing written before is lost.
    assert [e["action"].split()[0] for e in metrics["events"]] == ["rewound", "rewound", "stopped"]
    assert metrics["finished"] is False and metrics["history"][0]["epoch"] == 0


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, pictures):
    tmp = tmp_path_factory.mktemp("healthy")
    # --eval-every 1: every epoch scores the test split, the chosen one included
    proc, metrics = train(tmp, pictures, "--log-every", "1", "--eval-every", "1")
    return tmp / "logs" / "run", proc, metrics


def test_a_healthy_run_triggers_no_recovery(healthy):
    _, proc, metrics = healthy
    assert proc.returncode == 0, proc.stderr
    assert "events" not in metrics and "collapsed" not in proc.stderr


def test_best_is_chosen_on_validation_and_loads_by_default(healthy):
    run_dir, proc, metrics = healthy
    history = metrics["history"]
    assert all("val" in r and "test" in r for r in history)
    # Brute force: the first epoch with the highest validation MAP@R.
    trained = history[1:]
    top = max(r["val"]["map_at_r"] for r in trained)
    expected = next(r for r in trained if r["val"]["map_at_r"] == top)
    assert metrics["best"]["epoch"] == expected["epoch"] == best_record(history, 0.2)["epoch"]
    assert metrics["selection"]["split"] == "val" and metrics["selection"]["metric"] == "map_at_r"
    assert metrics["dataset"]["validation"] == 12 and metrics["dataset"]["train"] == 132
    assert metrics["dataset"]["validation_mode"] == "per-class"
    assert f"best: epoch {expected['epoch']}, chosen on validation MAP@R" in proc.stdout
    assert f"best epoch: {expected['epoch']}, chosen on validation" in proc.stderr
    # The default parameters of evaluate ("best") are the validation-chosen epoch's.
    out = evaluate_cli(str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)["metrics"]
    for key in ("precision_at_1", "map_at_r", "triplet_accuracy"):
        assert scores[key] == pytest.approx(expected["test"][key], abs=1e-6)


def test_val_fraction_zero_makes_the_last_epoch_the_best(tmp_path, pictures):
    proc, metrics = train(tmp_path, pictures, "--val-fraction", "0", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert metrics["best"]["epoch"] == 2 and "val" not in metrics["best"]
    assert metrics["selection"]["rule"] == "last epoch (no validation split)"
    assert metrics["dataset"]["train"] == 144 and metrics["dataset"]["validation"] == 0


def test_open_set_is_reported_and_validated_on_whole_classes(tmp_path):
    data = tmp_path / "open"
    write_pictures(str(data / "train"), [f"seen{i}" for i in range(5)], per_class=12)
    write_pictures(str(data / "test"), ["new0", "new1", "new2"], per_class=12, seed=1)
    proc, metrics = train(tmp_path, data, "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert "open set: 3 test classes never seen in training" in proc.stderr
    dataset = metrics["dataset"]
    assert dataset["open_set"] is True and dataset["unseen_test_classes"] == 3
    assert dataset["validation_mode"] == "class-disjoint" and dataset["validation"] == 24
    out = evaluate_cli(str(tmp_path / "logs" / "run"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("open set: 3 test classes never seen in training\n")


@pytest.mark.parametrize(
    "flags",
    [("--lr", "10", "--max-memory", "0")],
    ids=["streamed"],
)
def test_streamed_runs_validate_and_recover(tmp_path, pictures, flags):
    proc, metrics = train(tmp_path, pictures, "--log-every", "1", *flags)
    assert "Traceback" not in proc.stderr
    if "--max-memory" in flags:
        assert "streaming them" in proc.stderr
    assert metrics["dataset"]["validation"] == 12 and "val" in metrics["history"][-1]
    assert metrics["events"][0]["action"].startswith("rewound")
    if proc.returncode == 0:
        assert collapse_reason(metrics["best"]["val"], 0.2) is None
    else:
        assert proc.returncode == 2 and proc.stderr.rstrip().splitlines()[-1].startswith("error:")


class _RewindOnce(Callback):
    """After the first batch of epoch 2, put back the weights of the start of epoch 2."""

    def __init__(self):
        self.state, self.saved, self.done = None, None, False

    def on_epoch_begin(self, trainer):
        if trainer.epoch == 2 and not self.done:
            self.state = snapshot(trainer)
            self.saved = {k: p.data().asnumpy() for k, p in trainer.net.collect_params().items()}

    def on_batch_end(self, trainer):
        if trainer.epoch == 2 and not self.done:
            self.done = True
            rewind(trainer, self.state, 0.1)
            for name, p in trainer.net.collect_params().items():
                for ctx in trainer.contexts:
                    assert np.array_equal(p.data(ctx).asnumpy(), self.saved[name])


def test_rewind_on_two_contexts_with_a_validation_split():
    import mxnet as mx

    from gluon_triplet.config import Config
    from gluon_triplet.data.triplets import TripletDataset, create_pairs
    from gluon_triplet.nets.zoo import build_model
    from gluon_triplet.training.trainer import TripletTrainer, set_seed

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    x = (rng.normal(size=(4, 16))[y] + 0.5 * rng.normal(size=(120, 16))).astype(np.float32)
    split = carve_validation(y, y, 0.2)
    x_fit, x_val, order = split_rows(x, split)
    contexts = [mx.cpu(0), mx.cpu(1)]
    config = Config(model="mlp", epochs=3, pk_classes=4, pk_samples=8, seed=0)
    set_seed(0)
    net = build_model("mlp", ctx=contexts, hidden=(32,), embedding_size=8)
    guard = _RewindOnce()
    trainer = TripletTrainer(
        net,
        TripletDataset(x_fit, y[order][: len(x_fit)], seed=0),
        config,
        contexts,
        test_x=x_val,
        test_y=y[order][len(x_fit) :],
        test_triplets=create_pairs(y[split.val], seed=0),
        callbacks=[guard],
        val_x=x_val,
        val_y=y[order][len(x_fit) :],
        val_triplets=create_pairs(y[order][len(x_fit) :], seed=0),
    )
    history = trainer.fit()
    assert guard.done and trainer.lr_scale == pytest.approx(0.1)
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]  # epoch 2 trained again, once
    # Both replicas trained on from the same weights, and the validation split was scored.
    for p in net.collect_params().values():
        assert np.allclose(p.data(contexts[0]).asnumpy(), p.data(contexts[1]).asnumpy())
    assert all("map_at_r" in r["val"] for r in history)
    # The rewound learning rate is what a resumed run gets back.
    assert trainer.state_dict()["lr_scale"] == pytest.approx(0.1)
