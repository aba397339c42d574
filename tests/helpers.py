"""What several test files share: tiny data, snapshots of directories, the CLI's error lines."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess

import numpy as np
import pytest


def block_mean(x, f):
    """The mean of every ``f x f`` block of ``(N, C, H, W)`` pictures."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A small, fast model on tiny data; every case adds its own --dataset.
FAST = ["--model", "mlp", "--hidden", "16", "--embedding-size", "8", "--epochs", "1"]


FAST += ["--projector-samples", "0", "--no-plots", "-q"]
# These tests count and compare the whole training split: no validation split.
FAST += ["--val-fraction", "0"]


# Offline triplets in batches of 8 (several per epoch) so an interrupt lands mid-epoch.
RESUMABLE = [*FAST[:6], "--epochs", "3", "--miner", "offline", "--batch-size", "8"]


RESUMABLE += ["--optimizer", "adam", "--lr", "0.01", "--projector-samples", "10", "--no-plots"]


# Two epochs; with seed 2 the last epoch is also a new best (checked below), so its end
# writes both model files.
FAULTED = [*RESUMABLE, "--epochs", "2", "--seed", "2", "--projector-samples", "0"]
FAULTED += ["--val-fraction", "0"]  # best is then the last epoch, as the test expects


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


def images_labels(n_per_class=10, classes=4, shape=(6, 6), seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class).astype(np.uint8)
    x = rng.integers(0, 256, size=(len(y), *shape), dtype=np.uint8)
    return x, y


def idx_dir(path, train=None, test=None):
    from gluon_triplet.data.idx import write_idx

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


def idx_bytes(dims, code, payload):
    return (
        bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims) + payload
    )


def fill(text, inputs):
    return text.format(**{k: v for k, v in inputs.items()})


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


def edit_json(path, **changes):
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def sigterm(path):
    os.kill(os.getpid(), signal.SIGTERM)


def run_files(run_dir):
    """metrics.json's best and last epochs, and the bytes of the two model files."""
    metrics = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    files = {
        name: open(os.path.join(run_dir, name), "rb").read()
        for name in ("model-best.params", "model-last.params")
    }
    return metrics["finished"], metrics["best"]["epoch"], metrics["final"]["epoch"], files


def no_space(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def temporary_files(root):
    return [
        os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.startswith(".tmp")
    ]


def projector_points(directory):
    """Rows of the projector's label file(s) under ``directory`` (0 if there is none)."""
    rows = 0
    for dirpath, _, filenames in os.walk(directory):
        for name in filenames:
            if name == "metadata.tsv" and "embedding" in dirpath:
                with open(os.path.join(dirpath, name)) as f:
                    rows += sum(1 for line in f if line.strip())  # one label a line
    return rows


def after_hook(monkeypatch, hook, fn):
    """Call ``fn(trainer)`` after the callbacks' ``hook`` (``"on_epoch_begin"``,
    ``"on_batch_end"``, ...) in every trainer: the trainer calls its callbacks through one
    :class:`~gluon_triplet.training.callbacks.CallbackList`, and ``run`` takes no callback
    of its own."""
    from gluon_triplet.training.callbacks import CallbackList

    real = getattr(CallbackList, hook)

    def hooked(self, trainer):
        real(self, trainer)
        fn(trainer)

    monkeypatch.setattr(CallbackList, hook, hooked)


def interrupt_at(monkeypatch, epoch, batch, signum):
    """Make the running trainer send itself ``signum`` in ``epoch``, before ``batch``
    (``>= 1``): at the end of the batch before it."""

    def kill(trainer):
        if (trainer.epoch, trainer.batch) == (epoch, batch - 1):
            os.kill(os.getpid(), signum)

    after_hook(monkeypatch, "on_batch_end", kill)


class EpochEndFault:
    """Counts the renames (every atomic write ends with one) done at the end of epoch
    ``epoch`` and, with ``at`` set, calls ``fault`` before rename number ``at`` (or after
    the last one, ``at == "after"``)."""

    def __init__(self, monkeypatch, epoch, at=None, fault=None):
        self.epoch, self.at, self.fault = epoch, at, fault
        self.ending = None  # the epoch whose end is being written
        self.writes = []
        real_replace = os.replace

        def begin(trainer):
            self.ending = None

        def batch_end(trainer):
            if trainer.batch + 1 == trainer.num_batches:  # the epoch's training is done
                self.ending = trainer.epoch

        def replace(src, dst, **kwargs):
            if self.ending != self.epoch:
                return real_replace(src, dst, **kwargs)
            self.writes.append(os.path.basename(dst))
            if self.at == len(self.writes) - 1:
                self.fault(dst)
            real_replace(src, dst, **kwargs)
            if self.at == "after" and len(self.writes) == self.last:
                self.fault(dst)

        after_hook(monkeypatch, "on_epoch_begin", begin)
        after_hook(monkeypatch, "on_batch_end", batch_end)
        monkeypatch.setattr(os, "replace", replace)

    last = None


@contextlib.contextmanager
def mounted_tmpfs(mount, size):
    """A tmpfs of ``size`` (e.g. ``"256k"``) mounted on the new folder ``mount`` for the
    block; the test skips where mounting is not permitted (root only)."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
