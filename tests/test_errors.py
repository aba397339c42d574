"""Bad input, interrupts, divergence and untrusted files, through the real CLI.

Every bad-input case must print exactly one ``error: ...`` line naming the problem (no
traceback), exit with status 2, and leave the directory it ran in exactly as it was.
"""

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import mounted_tmpfs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gluon_triplet import TripletDataset
from gluon_triplet.cli import main
from gluon_triplet.data.datasets import DataError, load_dataset
from gluon_triplet.data.idx import read_idx, write_idx
from gluon_triplet.runs import checkpoint
from gluon_triplet.runs.report import command
from gluon_triplet.training.trainer import TripletTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small, fast model on tiny data; every case adds its own --dataset.
FAST = ["--model", "mlp", "--hidden", "16", "--embedding-size", "8", "--epochs", "1"]
FAST += ["--projector-samples", "0", "--no-plots", "-q"]
# These tests count and compare the whole training split: no validation split.
FAST += ["--val-fraction", "0"]


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def snapshot(root):
    """Every path under ``root`` with its content hash and mtime (None for directories)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.isdir(path):
                out[rel] = None
            else:
                with open(path, "rb") as f:
                    out[rel] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return out


# ------------------------------------------------------------------------------ tiny data


def images_labels(n_per_class=10, classes=4, shape=(6, 6), seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class).astype(np.uint8)
    x = rng.integers(0, 256, size=(len(y), *shape), dtype=np.uint8)
    return x, y


def idx_dir(path, train=None, test=None):
    os.makedirs(path)
    for prefix, (x, y) in (("train", train or images_labels()), ("t10k", test or images_labels(5))):
        write_idx(os.path.join(path, f"{prefix}-images-idx3-ubyte"), x)
        write_idx(os.path.join(path, f"{prefix}-labels-idx1-ubyte"), y)
    return path


def npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def xy(n_per_class=10, classes=4, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    return rng.normal(size=(len(y), dim)).astype(np.float32), y


class Exploit:
    """Unpickling this would create the file ``marker``: what a malicious npz can do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    p = {"dir": d}
    p["good_idx"] = idx_dir(str(d / "good_idx"))
    os.makedirs(d / "empty")
    p["empty"] = str(d / "empty")

    truncated = idx_dir(str(d / "truncated"))
    f = os.path.join(truncated, "train-images-idx3-ubyte")
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) - 7)
    p["truncated"] = truncated

    magic = idx_dir(str(d / "magic"))
    f = os.path.join(magic, "t10k-labels-idx1-ubyte")
    content = open(f, "rb").read()
    with open(f, "wb") as fh:
        fh.write(b"\x08\x03" + content[2:])
    p["magic"] = magic

    x, y = images_labels()
    p["count"] = idx_dir(str(d / "count"), train=(x, y[:-1]))
    p["one_class"] = idx_dir(str(d / "one_class"), train=(x, np.zeros(len(y), np.uint8)))

    x, y = xy()
    xt, yt = xy(3, seed=1)
    p["singletons"] = npz(d / "singletons.npz", x=x[:12], y=np.arange(12))
    p["singleton_train"] = npz(
        d / "singleton_train.npz", x_train=x[:12], y_train=np.arange(12), x_test=xt, y_test=yt
    )
    p["labels_n1"] = npz(d / "labels_n1.npz", x=x, y=y[:, None])
    p["labels_n2"] = npz(d / "labels_n2.npz", x=x, y=np.stack([y, y], axis=1))
    bad = x.copy()
    bad[3, 2] = np.nan
    p["nan"] = npz(d / "nan.npz", x=bad, y=y)
    bad[3, 2] = np.inf
    p["inf"] = npz(d / "inf.npz", x=bad, y=y)
    p["strings"] = npz(d / "strings.npz", x=np.full((40, 3), "a"), y=y)
    p["string_labels"] = npz(d / "string_labels.npz", x=x, y=np.array(["cat", "dog"] * 20))
    p["float_labels"] = npz(d / "float_labels.npz", x=x, y=y + 0.5)
    p["marker"] = str(d / "pwned")
    evil = np.empty(len(y), dtype=object)
    evil[:] = [Exploit(p["marker"])] * len(y)
    p["evil"] = npz(d / "evil.npz", x=evil, y=y)
    p["file"] = str(d / "a-file")
    with open(p["file"], "w") as fh:
        fh.write("not a directory\n")
    cfg = d / "configs"
    cfg.mkdir()
    for name, doc in {
        "unknown": '{"epochs": 1, "lrr": 0.1}',
        "type": '{"epochs": "3"}',
        "bool": '{"normalize": "yes"}',
        "not_json": '{"epochs": 1,',
        "list": "[1, 2]",
    }.items():
        (cfg / f"{name}.json").write_text(doc)
    p["cfg"] = cfg

    # Decompression bombs: 20 MB of zeros in ~20 KB files (refused under a 1 MB limit), and
    # headers that promise more than any machine has, over a few bytes of data (refused by
    # the default limit).
    x, y = xy()
    p["bomb_npz"] = str(d / "bomb.npz")
    np.savez_compressed(p["bomb_npz"], x=np.zeros((2000, 2500), np.float32), y=np.arange(2000))
    p["liar_npz"] = str(d / "liar.npz")
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 10**4)}
    with zipfile.ZipFile(p["liar_npz"], "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\0" * 64)
        with z.open("y.npy", "w") as f:
            np.save(f, y)
    bomb = idx_dir(str(d / "bomb_idx"))
    with gzip.open(os.path.join(bomb, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(idx_bytes([20, 1000, 1000], 0x08, bytes(20 * 1000 * 1000)))
    os.unlink(os.path.join(bomb, "train-images-idx3-ubyte"))
    p["bomb_idx"] = bomb
    p["no_features"] = npz(d / "no_features.npz", x=np.zeros((40, 0), np.float32), y=y)
    huge = np.array([2**64 - 1, 2**64 - 2, 7, 8] * 10, dtype=np.uint64)
    p["uint64_labels"] = npz(d / "uint64_labels.npz", x=x, y=huge)
    return p


# (case id) -> (argv, exact fragment of the one error line). {name} is filled from inputs.
CASES = {
    "unknown dataset": (
        ["--dataset", "cifar"],
        "error: unknown dataset 'cifar'; choose one of: mnist, fashion-mnist, mnist-5k, "
        "idx:DIR, npz:FILE",
    ),
    "missing data dir": (
        ["--dataset", "idx:{dir}/nope"],
        "error: IDX directory not found: {dir}/nope",
    ),
    "missing --data-dir": (
        ["--dataset", "mnist", "--data-dir", "{dir}/nope"],
        "error: IDX directory not found: {dir}/nope",
    ),
    "empty data dir": (
        ["--dataset", "idx:{empty}"],
        "error: missing IDX files in {empty}: train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]",
    ),
    "truncated IDX": (
        ["--dataset", "idx:{truncated}"],
        "error: {truncated}/train-images-idx3-ubyte: truncated IDX file: expected 1440 bytes "
        "of data, found 1433",
    ),
    "wrong IDX magic": (
        ["--dataset", "idx:{magic}"],
        "error: {magic}/t10k-labels-idx1-ubyte: not an IDX file (bad magic number 0x08030801)",
    ),
    "image/label count mismatch": (
        ["--dataset", "idx:{count}"],
        "error: image/label count mismatch in {count} (train): 40 images, 39 labels",
    ),
    "one class only": (
        ["--dataset", "idx:{one_class}"],
        "error: idx:{one_class} training set: need at least 2 classes with >= 2 samples to "
        "form triplets; got 1 class(es), 1 with >= 2 samples",
    ),
    "every class a singleton (x, y)": (
        ["--dataset", "npz:{singletons}"],
        "error: {singletons}: no test samples (every class has a single sample)",
    ),
    "every class a singleton (train split)": (
        ["--dataset", "npz:{singleton_train}"],
        "error: npz:{singleton_train} training set: need at least 2 classes with >= 2 "
        "samples to form triplets; got 12 class(es), 0 with >= 2 samples",
    ),
    "labels (N, 2)": (
        ["--dataset", "npz:{labels_n2}"],
        "error: {labels_n2}: x/y labels must be (N,) or (N, 1), got shape (40, 2)",
    ),
    "NaN in inputs": (
        ["--dataset", "npz:{nan}"],
        "error: {nan}: x/y samples contain NaN or infinite values",
    ),
    "inf in inputs": (
        ["--dataset", "npz:{inf}"],
        "error: {inf}: x/y samples contain NaN or infinite values",
    ),
    "non-numeric samples": (
        ["--dataset", "npz:{strings}"],
        "error: {strings}: x/y samples are not numeric (dtype <U1)",
    ),
    "non-numeric labels": (
        ["--dataset", "npz:{string_labels}"],
        "error: {string_labels}: x/y labels must be integers, got dtype <U3",
    ),
    "non-integer labels": (
        ["--dataset", "npz:{float_labels}"],
        "error: {float_labels}: x/y labels must be integers, got dtype float64",
    ),
    "object array (pickle) in npz": (
        ["--dataset", "npz:{evil}"],
        "error: {evil}: contains pickled objects; refusing to load",
    ),
    "batch size larger than the data": (
        ["--dataset", "idx:{good_idx}", "--miner", "offline", "--batch-size", "1000"],
        "error: --batch-size 1000 is larger than the 36 training triplets of an epoch; use "
        "--batch-size 36 or less",
    ),
    "P x K: more classes than exist": (
        ["--dataset", "idx:{good_idx}", "--miner", "batch-hard", "--pk-classes", "5"],
        "error: --pk-classes 5 asks for more classes per batch than the training data has "
        "(4); use --pk-classes 4 or less",
    ),
    "logs dir is a file": (
        ["--dataset", "idx:{good_idx}", "--logdir", "{file}"],
        "error: logs dir '{file}' exists and is not a directory",
    ),
    "logs dir under a file": (
        ["--dataset", "idx:{good_idx}", "--logdir", "{file}/logs"],
        "error: cannot create logs dir '{file}/logs': '{file}' is not a directory",
    ),
    "existing --run-name": (
        ["--dataset", "idx:{good_idx}", "--run-name", "earlier-run"],
        "error: run directory 'logs/earlier-run' already exists; choose another --run-name",
    ),
    "config: unknown key": (
        ["--config", "{cfg}/unknown.json"],
        "error: {cfg}/unknown.json: unknown config key(s): lrr; valid keys: dataset, data_dir,",
    ),
    "config: wrong type": (
        ["--config", "{cfg}/type.json"],
        "error: {cfg}/type.json: config key 'epochs' must be an integer or null, got '3'",
    ),
    "config: wrong type (bool)": (
        ["--config", "{cfg}/bool.json"],
        "error: {cfg}/bool.json: config key 'normalize' must be of type bool, got 'yes'",
    ),
    "config: not JSON": (
        ["--config", "{cfg}/not_json.json"],
        "error: {cfg}/not_json.json: not valid JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 14 (char 13))",
    ),
    "config: not an object": (
        ["--config", "{cfg}/list.json"],
        "error: {cfg}/list.json: config must be a JSON object, got list",
    ),
    "decompression bomb: npz": (
        ["--dataset", "npz:{bomb_npz}", "--max-data-bytes", "1000000"],
        "error: {bomb_npz}: array 'x' of shape (2000, 2500) float32 needs 19.1 MiB in memory, "
        "above the limit of 976.6 KiB (--max-data-bytes; default: half the available memory)",
    ),
    "decompression bomb: npz header beyond any memory (default limit)": (
        ["--dataset", "npz:{liar_npz}"],
        "error: {liar_npz}: array 'x' of shape (1000000000000, 10000) uint8 needs 35.5 PiB "
        "in memory, above the limit of ",
    ),
    "decompression bomb: gzipped IDX": (
        ["--dataset", "idx:{bomb_idx}", "--max-data-bytes", "1000000"],
        "error: {bomb_idx}/train-images-idx3-ubyte.gz: IDX data of shape (20, 1000, 1000) uint8 "
        "needs 76.3 MiB in memory, above the limit of 976.6 KiB (--max-data-bytes; default: "
        "half the available memory)",
    ),
    "--momentum nan": (
        ["--dataset", "idx:{good_idx}", "--optimizer", "sgd", "--momentum", "nan"],
        "error: momentum (--momentum) must be a finite number, got nan",
    ),
    "--weight-decay nan": (
        ["--dataset", "idx:{good_idx}", "--weight-decay", "nan"],
        "error: weight_decay (--weight-decay) must be a finite number, got nan",
    ),
    "--weight-decay inf": (
        ["--dataset", "idx:{good_idx}", "--weight-decay", "inf"],
        "error: weight_decay (--weight-decay) must be a finite number, got inf",
    ),
    "--lr inf": (
        ["--dataset", "idx:{good_idx}", "--lr", "inf"],
        "error: lr (--lr) must be a finite number, got inf",
    ),
    "--seed -1": (
        ["--dataset", "idx:{good_idx}", "--seed", "-1"],
        "error: seed (--seed) must be >= 0, got -1",
    ),
    "--embedding-size 3000000000": (
        ["--dataset", "idx:{good_idx}", "--embedding-size", "3000000000"],
        "error: embedding_size (--embedding-size) 3000000000 is too large: MXNet layers hold at "
        "most 2147483647 units, and one of 3000000000 units needs 11.2 GiB per input feature "
        "(float32 weights)",
    ),
    "--hidden 10000000000": (
        ["--dataset", "idx:{good_idx}", "--hidden", "10000000000"],
        "error: hidden (--hidden) 10000000000 is too large: MXNet layers hold at most "
        "2147483647 units, and one of 10000000000 units needs 37.3 GiB per input feature "
        "(float32 weights)",
    ),
    "--hidden 1000000000 (beyond memory)": (
        ["--dataset", "idx:{good_idx}", "--hidden", "1000000000"],
        "error: this run needs at least 1.1 TiB of memory: its 45000000008 parameters need "
        "670.6 GiB with their gradients and optimizer state; only ",
    ),
    "-K 100000000 (beyond memory)": (
        ["--dataset", "idx:{good_idx}", "-K", "100000000"],
        "error: this run needs at least 568.4 PiB of memory: a batch of 400000000 samples "
        "(-P 4 x -K 100000000) needs 568.4 PiB, 568.4 PiB of it for its 400000000 x 400000000 "
        "distances; only ",
    ),
    "samples of shape (N, 0)": (
        ["--dataset", "npz:{no_features}"],
        "error: {no_features}: x/y samples have no values: shape (40, 0) (every sample is empty)",
    ),
    "uint64 labels beyond int64": (
        ["--dataset", "npz:{uint64_labels}"],
        "error: {uint64_labels}: x/y labels must fit in int64; got uint64 values up to "
        "18446744073709551615 (number the classes 0, 1, ... instead)",
    ),
    "config: missing file": (
        ["--config", "{cfg}/missing.json"],
        "error: config file not found: {cfg}/missing.json",
    ),
}


def fill(text, inputs):
    return text.format(**{k: v for k, v in inputs.items()})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The CLI runs here with --logdir logs, which holds an earlier run to protect."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs" / "earlier-run").mkdir(parents=True)
    (tmp_path / "logs" / "earlier-run" / "model-best.params").write_bytes(b"precious")
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_error_line_exit_2_nothing_written(case, inputs, workdir, capsys):
    argv, expected = CASES[case]
    argv = [fill(a, inputs) for a in argv]
    expected = fill(expected, inputs)
    before, inputs_before = snapshot(workdir), snapshot(inputs["dir"])
    code = main([*FAST, "--logdir", "logs", *argv])
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert "Traceback" not in err
    assert snapshot(workdir) == before
    assert snapshot(inputs["dir"]) == inputs_before
    assert not os.path.exists(inputs["marker"])  # the pickle never ran


def test_labels_n_by_1_are_accepted_and_flattened(inputs, workdir, capsys):
    code = main(
        [*FAST, "--logdir", "logs", "--run-name", "r", "--dataset", f"npz:{inputs['labels_n1']}"]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((workdir / "logs" / "r" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["dataset"]["train"] + metrics["dataset"]["test"] == 40


def test_debug_shows_the_traceback(inputs, workdir):
    with pytest.raises(DataError, match="unknown dataset"):
        main([*FAST, "--logdir", "logs", "--dataset", "cifar", "--debug"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_logs_dir(inputs, workdir, capsys):
    locked = workdir / "locked"
    locked.mkdir(mode=0o500)
    code = main([*FAST, "--logdir", str(locked), "--dataset", f"idx:{inputs['good_idx']}"])
    assert code == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: logs dir {str(locked)!r} is not writable"
    ]
    assert os.listdir(locked) == []


# ------------------------------------------------------------------ interrupts and resume

# Offline triplets in batches of 8 (several per epoch) so an interrupt lands mid-epoch.
RESUMABLE = [*FAST[:6], "--epochs", "3", "--miner", "offline", "--batch-size", "8"]
RESUMABLE += ["--optimizer", "adam", "--lr", "0.01", "--projector-samples", "10", "--no-plots"]


def interrupt_at(monkeypatch, epoch, batch, signum):
    """Make the running trainer send itself ``signum`` in ``epoch``, before ``batch``."""
    real = TripletTrainer._forward

    def losses(self, i, idx):
        if (self.epoch, self.batch, i) == (epoch, batch, 0):
            os.kill(os.getpid(), signum)
        return real(self, i, idx)

    monkeypatch.setattr(TripletTrainer, "_forward", losses)


def final_state(run_dir):
    from mxnet import nd

    metrics = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    for record in metrics["history"]:
        record.pop("time")
    params = nd.load(os.path.join(run_dir, "model-last.params"))
    return metrics, {k: v.asnumpy() for k, v in params.items()}


def numbers(tree, prefix=""):
    """The numeric leaves of nested dicts/lists, by path."""
    if isinstance(tree, dict):
        return {k: v for key in tree for k, v in numbers(tree[key], f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, x in enumerate(tree) for k, v in numbers(x, f"{prefix}/{i}").items()}
    return {prefix: tree}


def assert_same_run(got, want, rtol=0.0):
    (m1, p1), (m2, p2) = got, want
    assert m1["finished"] and m2["finished"]
    assert [r["epoch"] for r in m1["history"]] == [r["epoch"] for r in m2["history"]]
    assert m1["best"]["epoch"] == m2["best"]["epoch"]
    h1, h2 = numbers(m1["history"]), numbers(m2["history"])
    assert h1.keys() == h2.keys()
    assert h1 == pytest.approx(h2, rel=rtol, abs=0 if rtol == 0 else 1e-7)
    assert p1.keys() == p2.keys()
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=rtol, atol=0 if rtol == 0 else 1e-7)


@pytest.fixture(scope="module")
def straight_run(inputs, tmp_path_factory):
    """The uninterrupted reference run."""
    logdir = tmp_path_factory.mktemp("straight")
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", str(logdir)]
    assert main([*args, "--run-name", "r"]) == 0
    return str(logdir / "r")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_then_resume_equals_uninterrupted(
    signum, code, inputs, straight_run, workdir, capsys, monkeypatch
):
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupt_at(monkeypatch, epoch=2, batch=2, signum=signum)
    assert main([*args, "--run-name", "r"]) == code
    err = capsys.readouterr().err
    run_dir = os.path.join("logs", "r")
    name = signal.Signals(signum).name
    assert error_lines(err) == [
        f"error: interrupted by {name} in epoch 2 of 3; the checkpoint of epoch 1 is in "
        f"{run_dir}/checkpoint (the partial epoch is dropped); continue with: "
        f"{command('--resume', run_dir)}"
    ]
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is handlers[0]  # restored
    assert signal.getsignal(signal.SIGTERM) is handlers[1]
    metrics = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    assert not metrics["finished"] and [r["epoch"] for r in metrics["history"]] == [0, 1]
    events = [f for f in os.listdir(run_dir) if f.startswith("events.out")]
    assert len(events) == 1 and os.path.getsize(os.path.join(run_dir, events[0])) > 0
    first_part = snapshot(run_dir)

    monkeypatch.undo()
    monkeypatch.chdir(workdir)
    assert main(["--resume", run_dir, "-q"]) == 0, capsys.readouterr().err
    # Appended, not overwritten: the first part's event file and config are untouched.
    after = snapshot(run_dir)
    kept = [f for f in first_part if f.startswith(("raw_input", "events", "config.json"))]
    assert len(kept) > 3 and {f: after[f] for f in kept} == {f: first_part[f] for f in kept}
    assert len([f for f in after if f.startswith("events.out")]) == 2
    assert_same_run(final_state(run_dir), final_state(straight_run))


def test_resume_of_run_interrupted_before_first_epoch_restarts(
    inputs, straight_run, workdir, capsys, monkeypatch
):
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    interrupt_at(monkeypatch, epoch=1, batch=1, signum=signal.SIGINT)
    assert main([*args, "--run-name", "r"]) == 130
    assert (
        "before any epoch finished, so there is no checkpoint; continue with: "
        f"{command('--resume', 'logs/r')}\n"
    ) in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.chdir(workdir)
    assert main(["--resume", "logs/r", "-q"]) == 0
    assert_same_run(final_state("logs/r"), final_state(straight_run))


@pytest.fixture
def interrupted_run(inputs, workdir, monkeypatch, capsys):
    """logs/r: interrupted in epoch 2, with the checkpoint of epoch 1."""
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    with monkeypatch.context() as m:
        interrupt_at(m, epoch=2, batch=1, signum=signal.SIGINT)
        assert main([*args, "--run-name", "r"]) == 130
    capsys.readouterr()
    return workdir / "logs" / "r"


def edit_json(path, **changes):
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


RESUME_CASES = {
    "checkpoint of another architecture": (
        lambda run: edit_json(run / "config.json", hidden=[24]),
        "error: logs/r/checkpoint/model-e0001.params does not fit the model the config "
        "describes (mlp, embedding size 8): Failed loading Parameter",
    ),
    "checkpoint of another optimizer": (
        lambda run: edit_json(run / "config.json", optimizer="sgd"),
        "error: logs/r/checkpoint/optimizer-e0001.params: saved by optimizer Adam, but the "
        "config uses SGD",
    ),
    "truncated checkpoint": (
        lambda run: (run / "checkpoint" / "model-e0001.params").write_bytes(b"\x12\x01"),
        "error: logs/r/checkpoint/model-e0001.params: does not match the checksum in "
        "checkpoint.json",
    ),
    "torn manifest": (
        lambda run: (run / "checkpoint" / "checkpoint.json").write_text('{"epoch": 1,'),
        "error: logs/r/checkpoint/checkpoint.json: unreadable checkpoint manifest",
    ),
    "no checkpoint, but outputs": (
        lambda run: shutil.rmtree(run / "checkpoint"),
        "error: logs/r has no checkpoint to resume from (no checkpoint/checkpoint.json) but "
        "holds metrics.json, model-best.params, model-last.params, which a restart would "
        "overwrite",
    ),
    "finished run": (
        lambda run: edit_json(run / "metrics.json", finished=True),
        "error: logs/r already finished its 3 epochs; nothing to resume",
    ),
    "not a run dir": (
        lambda run: (run / "config.json").unlink(),
        "error: 'logs/r' is not a run directory: it has no config.json",
    ),
    "missing run dir": (
        lambda run: shutil.rmtree(run),
        "error: run directory 'logs/r' does not exist",
    ),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_bad_resume_one_error_line_nothing_written(case, interrupted_run, workdir, capsys):
    damage, expected = RESUME_CASES[case]
    damage(interrupted_run)
    before = snapshot(workdir)
    code = main(["--resume", "logs/r"])
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert "Traceback" not in err
    assert snapshot(workdir) == before


def test_resume_refuses_other_flags(interrupted_run, workdir, capsys):
    before = snapshot(workdir)
    assert main(["--resume", "logs/r", "--lr", "0.5", "--epochs", "9"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: --resume continues a run with its own config.json; drop --epochs, --lr"
    ]
    assert snapshot(workdir) == before


def test_interrupt_from_outside_then_resume_subprocess(tmp_path, monkeypatch):
    """The real thing: a separate process gets SIGINT from outside once epoch 1's
    checkpoint exists; the printed `--resume` command, run as printed, then ends where an
    uninterrupted run ends."""
    common = ["--dataset", "mnist-5k", "--preset", "reference", "--hidden", "64"]
    common += ["--epochs", "5", "--projector-samples", "0", "--no-plots"]
    script = os.path.join(ROOT, "run_train.py")
    manifest = tmp_path / "logs" / "cut" / "checkpoint" / "checkpoint.json"
    proc = subprocess.Popen(
        [sys.executable, script, *common, "--logdir", "logs", "--run-name", "cut"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (line,) = error_lines(err)
    assert line.startswith("error: interrupted by SIGINT")
    monkeypatch.chdir(tmp_path)  # render the command as the child, running there, did
    resume = command("--resume", "logs/cut")
    assert line.endswith(f"continue with: {resume}"), line
    assert "Traceback" not in err

    resumed = subprocess.run(
        line.split("continue with: ")[1],
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    log = (tmp_path / "logs" / "cut" / "train.log").read_text()
    assert log.count("run directory:") == 2  # appended by both parts

    assert main([*common, "--logdir", str(tmp_path / "logs"), "--run-name", "straight", "-q"]) == 0
    # Another process: the same arithmetic, but allow for float reassociation anyway.
    assert_same_run(
        final_state(tmp_path / "logs" / "cut"),
        final_state(tmp_path / "logs" / "straight"),
        rtol=1e-5,
    )


# ---------------------------------------------------------------------------- divergence


def test_non_finite_loss_names_epoch_batch_and_last_good_checkpoint(
    inputs, workdir, capsys, monkeypatch
):
    real = TripletTrainer._forward

    def poisoned(self, i, idx):
        from mxnet import nd

        objective, stats = real(self, i, idx)
        if (self.epoch, self.batch) == (2, 3):
            # (loss sum, active, count): a NaN loss leaves the count of triplets alone.
            nan = nd.array([float("nan"), 1, 1], ctx=stats.context)
            return objective * float("nan"), stats * nan
        return objective, stats

    monkeypatch.setattr(TripletTrainer, "_forward", poisoned)
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    assert main([*args, "--run-name", "r", "--log-every", "1"]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [
        "error: non-finite training loss at epoch 2, batch 4; try a lower --lr; last good "
        "checkpoint: logs/r/checkpoint (epoch 1; its parameters are also "
        "logs/r/model-last.params)"
    ]
    assert checkpoint.read_manifest("logs/r/checkpoint")["epoch"] == 1


# ------------------------------------------------------------------------------ fuzzing


def idx_bytes(dims, code, payload):
    return (
        bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims) + payload
    )


@given(
    dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=0, max_size=5),
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]),
    payload=st.binary(max_size=200),
    cut=st.integers(0, 300),
    gz=st.booleans(),
)
# Found by this test: an empty array whose other dimensions NumPy cannot represent.
@example(dims=[0, 58786, 12523302, 12528439], code=8, payload=b"", cut=20, gz=False)
@settings(
    max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzz_read_idx_headers_and_truncations(tmp_path, dims, code, payload, cut, gz):
    """Any header (huge or zero dims, bad type codes), any payload, cut anywhere: an array
    of the declared shape or a one-line DataError; never a hang or a huge allocation."""
    import gzip

    content = idx_bytes(dims, code, payload)[:cut]
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(content) if gz else content)
    try:
        arr = read_idx(path)
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        assert arr.shape == tuple(dims) and arr.nbytes == len(content) - 4 - 4 * len(dims)


@given(data=st.binary(max_size=300), cut=st.integers(0, 2000))
@settings(
    max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzz_npz_loader(tmp_path, data, cut):
    """Random bytes, or a real archive cut short or with bytes replaced: a bundle or a
    DataError, nothing else."""
    x, y = xy()
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    raw = good.read_bytes()
    for content in (data, raw[:cut], raw[:cut] + data + raw[cut + len(data) :]):
        path = tmp_path / "f.npz"
        path.write_bytes(content)
        try:
            bundle = load_dataset(f"npz:{path}")
        except DataError as e:
            assert "\n" not in str(e)
        else:
            assert len(bundle.x_train) + len(bundle.x_test) == len(bundle.y_train) + len(
                bundle.y_test
            )


labels_strategy = st.one_of(
    hnp.arrays(
        np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=30), elements=st.integers(-3, 5)
    ),
    hnp.arrays(
        np.float64, st.integers(0, 30), elements=st.floats(allow_nan=True, allow_infinity=True)
    ),
    hnp.arrays("<U2", st.integers(0, 30), elements=st.sampled_from(["a", "b", "c", ""])),
    hnp.arrays(np.bool_, st.tuples(st.integers(0, 30), st.just(1))),
)


@given(labels=labels_strategy, n=st.none() | st.integers(0, 31), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=2000)
def test_fuzz_triplet_dataset_label_layouts(labels, n, seed):
    """Any label layout, as many samples as labels or not: valid triplets (anchor and
    positive share a class and differ, the negative's class differs) or a ValueError."""
    n = len(labels) if n is None else n
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    try:
        ds = TripletDataset(x, labels, seed=seed)
    except ValueError as e:
        assert "\n" not in str(e)
        return
    flat = np.asarray(labels).reshape(len(x))
    a, p, neg = ds.anchor_idx, ds.positive_idx, ds.negative_idx
    assert len(ds) > 0 and (a != p).all()
    same = lambda i, j: flat[i] == flat[j] or (flat[i] != flat[i] and flat[j] != flat[j])  # noqa: E731
    assert all(same(i, j) for i, j in zip(a, p))
    assert not any(same(i, j) for i, j in zip(a, neg))


# ------------------------------------------------------------------- the run-directory lock


def test_training_holds_the_run_dir_lock_and_releases_it(inputs, workdir, capsys, monkeypatch):
    from gluon_triplet.runs.rundir import RunDir, RunDirInUse

    seen = []
    real = TripletTrainer._forward

    def losses(self, i, idx):
        if not seen:
            try:
                RunDir("logs/r").check_free()
                seen.append(None)
            except RunDirInUse as e:
                seen.append(str(e))
        return real(self, i, idx)

    monkeypatch.setattr(TripletTrainer, "_forward", losses)
    args = [*FAST, "--logdir", "logs", "--run-name", "r", "--dataset", f"idx:{inputs['good_idx']}"]
    assert main(args) == 0, capsys.readouterr().err
    assert seen == [f"logs/r is in use by process {os.getpid()} on {socket.gethostname()}"]
    RunDir("logs/r").check_free()  # released


def test_resume_of_a_run_in_use_is_refused(interrupted_run, workdir, capsys):
    # Holds the lock as RunDir.lock does (flock, PID inside), without importing MXNet.
    holder_code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.write(fd, b'%d\\n' % os.getpid())\n"
        "print('locked', flush=True); sys.stdin.readline()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, "logs/r/.lock"],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        before = snapshot(workdir)
        assert main(["--resume", "logs/r", "-q"]) == 2
        err = capsys.readouterr().err
        assert error_lines(err) == [f"error: logs/r is in use by process {holder.pid}"]
        assert "Traceback" not in err
        assert snapshot(workdir) == before
    finally:
        holder.communicate("\n", timeout=60)


# ------------------------------------------- faults at every write point of an epoch's end


class EpochEndFault:
    """Counts the renames (every atomic write ends with one) done at the end of epoch
    ``epoch`` and, with ``at`` set, calls ``fault`` before rename number ``at`` (or after
    the last one, ``at == "after"``)."""

    def __init__(self, monkeypatch, epoch, at=None, fault=None):
        self.epoch, self.at, self.fault = epoch, at, fault
        self.ending = None  # the epoch whose end is being written
        self.writes = []
        real_replace, real_train = os.replace, TripletTrainer._train_epoch

        def train_epoch(trainer):
            self.ending = None
            stats = real_train(trainer)
            self.ending = trainer.epoch
            return stats

        def replace(src, dst, **kwargs):
            if self.ending != self.epoch:
                return real_replace(src, dst, **kwargs)
            self.writes.append(os.path.basename(dst))
            if self.at == len(self.writes) - 1:
                self.fault(dst)
            real_replace(src, dst, **kwargs)
            if self.at == "after" and len(self.writes) == self.last:
                self.fault(dst)

        monkeypatch.setattr(TripletTrainer, "_train_epoch", train_epoch)
        monkeypatch.setattr(os, "replace", replace)

    last = None


def sigterm(path):
    os.kill(os.getpid(), signal.SIGTERM)


# Two epochs; with seed 2 the last epoch is also a new best (checked below), so its end
# writes both model files.
FAULTED = [*RESUMABLE, "--epochs", "2", "--seed", "2", "--projector-samples", "0"]
FAULTED += ["--val-fraction", "0"]  # best is then the last epoch, as the test expects


@pytest.fixture(scope="module")
def epoch_end_writes(inputs, tmp_path_factory):
    """The uninterrupted run, and the files written at the end of its last epoch."""
    logdir = tmp_path_factory.mktemp("writes")
    args = [*FAULTED, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", str(logdir)]
    with pytest.MonkeyPatch.context() as m:
        probe = EpochEndFault(m, 2)
        assert main([*args, "--run-name", "r"]) == 0
    return str(logdir / "r"), probe.writes


def run_files(run_dir):
    """metrics.json's best and last epochs, and the bytes of the two model files."""
    metrics = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    files = {
        name: open(os.path.join(run_dir, name), "rb").read()
        for name in ("model-best.params", "model-last.params")
    }
    return metrics["finished"], metrics["best"]["epoch"], metrics["final"]["epoch"], files


def test_sigterm_at_every_write_of_an_epoch_end_then_resume(
    inputs, epoch_end_writes, workdir, capsys, monkeypatch
):
    """SIGTERM before each rename at the end of the last epoch (and after the last one):
    the resumed run's model files are bit-for-bit those of an uninterrupted run, which
    are the epochs metrics.json names."""
    straight, writes = epoch_end_writes
    want = run_files(straight)
    assert want[:3] == (True, 2, 2)
    for name in ("checkpoint.json", "model-best.params", "model-last.params", "metrics.json"):
        assert name in writes
    args = [*FAULTED, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    for at in [*range(len(writes)), "after"]:
        run = f"logs/r{at}"
        with monkeypatch.context() as m:
            fault = EpochEndFault(m, 2, at, sigterm)
            fault.last = len(writes)
            assert main([*args, "--run-name", f"r{at}"]) == 143, at
        err = capsys.readouterr().err
        assert len(error_lines(err)) == 1 and "interrupted by SIGTERM" in err, (at, err)
        assert not [f for f in os.listdir(run) if f.startswith(".tmp")], at
        code = main(["--resume", run, "-q"])
        err = capsys.readouterr().err
        if at == "after":  # metrics.json was the last write: the run had finished
            assert code == 2 and "already finished" in err, err
        else:
            assert code == 0, (at, err)
        assert run_files(run) == want, f"fault before write {at} of {writes}"


# ------------------------------------------------------------- hang-up and quit signals


@pytest.mark.parametrize("signum, code", [(signal.SIGHUP, 129), (signal.SIGQUIT, 131)])
def test_sighup_and_sigquit_stop_training_like_sigterm(
    signum, code, inputs, workdir, capsys, monkeypatch
):
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    before = signal.getsignal(signum)
    interrupt_at(monkeypatch, epoch=2, batch=1, signum=signum)
    assert main([*args, "--run-name", "r"]) == code
    name = signal.Signals(signum).name
    assert error_lines(capsys.readouterr().err) == [
        f"error: interrupted by {name} in epoch 2 of 3; the checkpoint of epoch 1 is in "
        "logs/r/checkpoint (the partial epoch is dropped); continue with: "
        f"{command('--resume', 'logs/r')}"
    ]
    assert signal.getsignal(signum) is before


# ------------------------------------------------------------- the offline fallback


def test_offline_fallback_is_recorded_and_rereading_the_run_never_downloads(
    workdir, capsys, monkeypatch
):
    from gluon_triplet.data import datasets as data

    monkeypatch.setenv("MXNET_HOME", str(workdir / "mxnet-home"))  # no cached MNIST
    calls = []

    def offline(url, path, sha1):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "_download", offline)
    args = [*FAST, "--epochs", "1", "--dataset", "mnist", "--logdir", "logs", "--run-name", "r"]
    assert main(args) == 0
    assert calls  # training tried, then fell back
    assert json.loads((workdir / "logs/r/config.json").read_text())["dataset"] == "mnist-5k"
    metrics = json.loads((workdir / "logs/r/metrics.json").read_text())
    assert metrics["dataset"]["name"] == "mnist-5k"
    assert metrics["dataset"]["requested"] == "mnist"
    capsys.readouterr()

    calls.clear()
    assert main(["embed", "logs/r", "--out", "emb.npy"]) == 0
    assert main(["evaluate", "logs/r", "--params", "last"]) == 0
    # A run of an older version recorded "mnist" in config.json: metrics.json tells.
    config = json.loads((workdir / "logs/r/config.json").read_text())
    (workdir / "logs/r/config.json").write_text(json.dumps({**config, "dataset": "mnist"}))
    assert main(["evaluate", "logs/r"]) == 0
    out, err = capsys.readouterr()
    assert calls == [], calls
    assert "Downloading" not in out + err and "WARNING" not in err, err
    assert out.count("mnist-5k test (1000 samples)") == 2


# ------------------------------------------------------ --projector-samples: one meaning


def projector_points(directory):
    """Rows of the projector's label file(s) under ``directory`` (0 if there is none)."""
    rows = 0
    for dirpath, _, filenames in os.walk(directory):
        for name in filenames:
            if name == "metadata.tsv" and "embedding" in dirpath:
                with open(os.path.join(dirpath, name)) as f:
                    rows += sum(1 for line in f if line.strip())  # one label a line
    return rows


def test_projector_samples_0_is_none_and_minus_1_all_in_training_and_embed(inputs, workdir, capsys):
    args = [*FAST, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    assert main([*args, "--run-name", "none", "--projector-samples", "0"]) == 0
    assert main([*args, "--run-name", "all", "--projector-samples", "-1"]) == 0
    assert projector_points("logs/none") == 0
    assert projector_points("logs/all") == 20  # the whole test split
    capsys.readouterr()

    embed = ["embed", "logs/all", "--out", "e.npy", "--projector", "proj"]
    assert main([*embed, "--projector-samples", "0"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: --projector-samples 0 means no projector points; with --projector give a "
        "count, or -1 for all"
    ]
    assert not os.path.exists("e.npy") and not os.path.exists("proj")
    assert main([*embed, "--projector-samples", "-1"]) == 0
    assert projector_points("proj") == 20


# ---------------------------------------------------------------------------- disk full


def no_space(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def temporary_files(root):
    return [
        os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.startswith(".tmp")
    ]


@pytest.mark.parametrize("name", ["model-last.params", "checkpoint.json", "metrics.json"])
def test_disk_full_at_an_epoch_end_one_error_line_then_resume(
    name, inputs, epoch_end_writes, workdir, capsys, monkeypatch
):
    """ENOSPC while writing one file of the last epoch's end: one error line naming the
    file, the free space and the last good checkpoint; no temporary file left; after
    --resume the run equals an uninterrupted one."""
    straight, writes = epoch_end_writes
    args = [*FAULTED, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    with monkeypatch.context() as m:
        EpochEndFault(m, 2, writes.index(name), no_space)
        assert main([*args, "--run-name", "r"]) == 2
    err = capsys.readouterr().err
    saved = 2 if writes.index(name) > writes.index("checkpoint.json") else 1
    path = "logs/r/" + ("checkpoint/" if name == "checkpoint.json" else "") + name
    (line,) = error_lines(err)
    assert re.fullmatch(
        rf"error: cannot write {path}: No space left on device \([0-9.]+ [KMGT]iB free in "
        rf"{os.path.dirname(path)}\); last good checkpoint: logs/r/checkpoint \(epoch {saved}\); "
        r"free some space, then continue with: " + re.escape(command("--resume", "logs/r")),
        line,
    ), line
    assert "Traceback" not in err
    assert temporary_files("logs") == []
    assert main(["--resume", "logs/r", "-q"]) == 0, capsys.readouterr().err
    assert run_files("logs/r") == run_files(straight)


def test_mxnet_failing_to_write_parameters_is_a_disk_full_line(
    inputs, straight_run, workdir, capsys, monkeypatch
):
    """A real failed write inside MXNet: the checkpoint's temporary file is a link to
    /dev/full, where every write fails with ENOSPC (MXNet reports no errno)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    with monkeypatch.context() as m:
        interrupt_at(m, epoch=2, batch=1, signum=signal.SIGINT)
        assert main([*args, "--run-name", "r"]) == 130
    os.symlink("/dev/full", "logs/r/checkpoint/.tmp-model-e0002.params")
    capsys.readouterr()
    assert main(["--resume", "logs/r"]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert line.startswith(
        "error: cannot write logs/r/checkpoint/model-e0002.params: MXNet wrote an incomplete "
        "file (Invalid NDArray file format) ("
    ), line
    assert line.endswith(
        "; last good checkpoint: logs/r/checkpoint (epoch 1); free some space, then continue "
        f"with: {command('--resume', 'logs/r')}"
    ), line
    assert "Traceback" not in err
    assert not os.path.lexists("logs/r/checkpoint/.tmp-model-e0002.params")
    assert checkpoint.read_manifest("logs/r/checkpoint")["epoch"] == 1
    assert main(["--resume", "logs/r", "-q"]) == 0
    assert_same_run(final_state("logs/r"), final_state(straight_run))


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 3 MB tmpfs (root only; skipped where mounting is not permitted)."""
    with mounted_tmpfs(tmp_path / "full", "3m") as mount:
        yield mount


def test_a_real_full_disk(inputs, straight_run, tiny_tmpfs, capsys, monkeypatch):
    """--logdir on a 3 MB tmpfs filled up to 24 KB: the first parameter file (~48 KB)
    does not fit. One error line; no partial file; --resume finishes once there is room."""
    monkeypatch.chdir(tiny_tmpfs)
    filler = tiny_tmpfs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (shutil.disk_usage(tiny_tmpfs).free - 24 * 1024))
    args = [*RESUMABLE, "--hidden", "256", "--dataset", f"idx:{inputs['good_idx']}"]
    assert main([*args, "--logdir", "logs", "--run-name", "r"]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    # Which file fills the disk depends on the libraries' write sizes (mxboard's projector
    # files come first); what is checked is the form of the line.
    assert re.fullmatch(
        r"error: cannot write (into )?logs/r\S*: No space left on device \([0-9.]+ (bytes|KiB) "
        r"free in logs/r\S*\); no epoch finished, so there is no checkpoint; free some space, "
        r"then continue with: " + re.escape(command("--resume", "logs/r")),
        line,
    ), line
    assert "Traceback" not in err and "Logging error" not in err
    assert temporary_files("logs") == []
    filler.unlink()
    assert main(["--resume", "logs/r", "-q"]) == 0, capsys.readouterr().err
    assert json.loads(open("logs/r/metrics.json").read())["finished"]


# --------------------------------------------------------------- more validation gaps


def test_embed_params_not_a_params_file_one_error_line(inputs, workdir, capsys):
    args = [*FAST, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    assert main([*args, "--run-name", "r"]) == 0
    capsys.readouterr()
    before = snapshot(workdir)
    assert main(["embed", "logs/r", "--params", "/etc/passwd", "--out", "e.npy"]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [
        "error: cannot load /etc/passwd into the model of logs/r/config.json: Invalid NDArray "
        "file format"
    ], err
    assert "Traceback" not in err
    assert snapshot(workdir) == before


def test_triplet_dataset_takes_uint64_labels_near_2_to_the_64():
    y = np.array([2**64 - 1, 2**64 - 2, 5] * 4, dtype=np.uint64)
    ds = TripletDataset(np.arange(12, dtype=np.float32)[:, None], y, seed=0)
    assert ds.classes.dtype == np.uint64
    assert sorted(int(c) for c in ds.classes) == [5, 2**64 - 2, 2**64 - 1]
    assert (ds.classes[ds.labels] == y).all()
    a, p, n = ds.anchor_idx, ds.positive_idx, ds.negative_idx
    assert len(a) > 0 and (y[a] == y[p]).all() and (y[a] != y[n]).all()
