"""Bad input, interrupts, divergence and untrusted files, through the real CLI.

Every bad-input case must print exactly one ``error: ...`` line naming the problem (no
traceback), exit with status 2, and leave the directory it ran in exactly as it was.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gluon_triplet import TripletDataset, checkpoint
from gluon_triplet.cli import main
from gluon_triplet.data import DataError, load_dataset, read_idx, write_idx
from gluon_triplet.train import TripletTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small, fast model on tiny data; every case adds its own --dataset.
FAST = ["--model", "mlp", "--hidden", "16", "--embedding-size", "8", "--epochs", "1"]
FAST += ["--projector-samples", "0", "--no-plots", "-q"]


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
        "error: {cfg}/type.json: config key 'epochs' must be of type int, got '3'",
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
    real = TripletTrainer._losses

    def losses(self, i, idx):
        if (self.epoch, self.batch, i) == (epoch, batch, 0):
            os.kill(os.getpid(), signum)
        return real(self, i, idx)

    monkeypatch.setattr(TripletTrainer, "_losses", losses)


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
        f"gluon-triplet --resume {run_dir}"
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
    assert "before any epoch finished, so there is no checkpoint; continue with" in (
        capsys.readouterr().err
    )
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


def test_interrupt_from_outside_then_resume_subprocess(tmp_path):
    """The real thing: a separate process gets SIGINT from outside once epoch 1's
    checkpoint exists; `--resume` then ends where an uninterrupted run ends."""
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
    assert line.endswith("continue with: gluon-triplet --resume logs/cut")
    assert "Traceback" not in err

    resumed = subprocess.run(
        [sys.executable, script, "--resume", "logs/cut"],
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
    real = TripletTrainer._losses

    def poisoned(self, i, idx):
        loss, weight = real(self, i, idx)
        return (
            (loss * float("nan"), weight) if (self.epoch, self.batch) == (2, 3) else (loss, weight)
        )

    monkeypatch.setattr(TripletTrainer, "_losses", poisoned)
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
    from gluon_triplet.rundir import RunDir, RunDirInUse

    seen = []
    real = TripletTrainer._losses

    def losses(self, i, idx):
        if not seen:
            try:
                RunDir("logs/r").check_free()
                seen.append(None)
            except RunDirInUse as e:
                seen.append(str(e))
        return real(self, i, idx)

    monkeypatch.setattr(TripletTrainer, "_losses", losses)
    args = [*FAST, "--logdir", "logs", "--run-name", "r", "--dataset", f"idx:{inputs['good_idx']}"]
    assert main(args) == 0, capsys.readouterr().err
    assert seen == [f"logs/r is in use by process {os.getpid()}"]
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
