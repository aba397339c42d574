"""runs.run: its helpers, and whole runs through the CLI: interrupts and resume, divergence,
the run directory's lock, faults at an epoch's end (bad input is in test_cli_train.py)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import (
    FAST,
    FAULTED,
    RESUMABLE,
    ROOT,
    EpochEndFault,
    after_hook,
    assert_same_run,
    edit_json,
    error_lines,
    final_state,
    interrupt_at,
    run_files,
    sigterm,
    snapshot,
)
from mxnet import nd

from gluon_triplet.cli import main
from gluon_triplet.config import Config
from gluon_triplet.nets.zoo import model_from_config
from gluon_triplet.runs import checkpoint
from gluon_triplet.runs.report import command
from gluon_triplet.runs.run import _dense_widths, _resolve_model


def _dense_parameters(net, sample_shape):
    """Brute force: build the net's deferred shapes with one sample, count Dense weights."""
    net(nd.zeros((1, *sample_shape)))
    return sum(
        int(np.prod(p.shape)) for name, p in net.collect_params().items() if "_dense" in name
    )


def _arch(block, channels, **more):
    return {"model": "cnn", "architecture": {"block": block, "channels": channels, **more}}


@pytest.mark.parametrize(
    "options, shape",
    [
        ({}, (28, 28)),  # auto: the pooled CNN
        ({"model": "convnet"}, (28, 28)),
        (_arch("strided", (8, 16)), (12, 12)),
        (_arch("pooled", (8, 16, 24)), (3, 20, 20)),
        (_arch("pooled", (4, 8), pool_first=True, batch_norm=True), (13, 9)),
        ({"hidden": (32,), "model": "convnet"}, (28, 28)),
        # Past 32 pixels a side the nets grow deeper; the convnet pools globally.
        ({}, (3, 64, 48)),
        ({"model": "convnet"}, (3, 64, 48)),
        (_arch("strided", (8, 16), pool="avg"), (40, 40)),
        ({"model": "mlp", "hidden": (32, 16)}, (12, 12)),
    ],
)
def test_memory_estimate_counts_the_dense_layers_of_the_net_built(options, shape):
    # The estimate reads the architecture the run resolved and records.
    config = _resolve_model(Config(embedding_size=16, **options), shape)
    features, widths = _dense_widths(config, shape)
    estimate = sum(a * b + b for a, b in zip([features, *widths[:-1]], widths))
    net, _ = model_from_config(config, shape)
    assert estimate == _dense_parameters(net, shape)


def test_a_run_resolves_its_model_once_and_records_it(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        config = _resolve_model(Config(), (28, 28))
    assert (
        "model: cnn, pooled blocks 16 32 128, BatchNorm from convolution 3 (auto: 28 x 28 data)"
        in caplog.messages
    )
    assert (config.model, config.input_shape) == ("cnn", (28, 28))
    assert config.architecture == {
        "block": "pooled",
        "channels": (16, 32, 128),
        "pool": "flatten",
        "batch_norm": True,
        "batch_norm_from": 3,
    }
    # Resolving the record again (--resume) changes nothing; a recorded architecture is
    # kept whatever the name would give for the data.
    assert _resolve_model(config, (28, 28)) == config
    mine = {"block": "pooled", "channels": (4, 8), "pool": "avg", "pool_first": True}
    kept = _resolve_model(Config(model="cnn", architecture=mine), (3, 64, 64))
    assert kept.architecture == mine
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        convnet = _resolve_model(Config(model="convnet"), (3, 40, 40))
        mlp = _resolve_model(Config(), (784,))
    assert caplog.messages == [
        "model: convnet, strided blocks 32 64 128 (3 x 40 x 40 data)",
        "model: mlp (auto: 784 data)",
    ]
    assert convnet.architecture["pool"] == "avg"
    assert (mlp.model, mlp.architecture, mlp.input_shape) == ("mlp", None, (784,))


def test_a_run_resolves_automatic_epochs_for_its_training_set_and_records_them(tmp_path, capsys):
    """40 training samples: ceil(30,000 / 40) = 750 passes, capped at 30; the run logs
    and records the count, and trains that many epochs."""
    import json

    import numpy as np

    from gluon_triplet.cli import main

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    x = (rng.normal(size=(48, 6)) + y[:, None]).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    if True:
        status = main(
            [
                "--dataset",
                f"npz:{tmp_path / 'd.npz'}",
                "--logdir",
                str(tmp_path / "logs"),
                "--run-name",
                "r",
                "--model",
                "mlp",
                "--no-plots",
                "--projector-samples",
                "0",
                "-P",
                "4",
                "-K",
                "4",
                "--log-every",
                "1000",
            ]
        )
    assert status == 0
    # 40 training samples, of which 8 (2 of each class) validate: 32 train.
    assert "epochs: 30 (auto: 32 training samples;" in capsys.readouterr().err
    run = tmp_path / "logs" / "r"
    recorded = json.loads((run / "config.json").read_text())
    assert (recorded["epochs"], recorded["lr"], recorded["warmup_epochs"]) == (30, 0.001, 0.0)
    assert json.loads((run / "metrics.json").read_text())["history"][-1]["epoch"] == 30


@pytest.mark.parametrize(
    "flags, lr, warmup, logged",
    [
        ([], 0.002, 0.3, "(auto lr and warmup_epochs: a run of at most 5 epochs)"),
        (["--lr", "0.01"], 0.01, 0.3, "(auto warmup_epochs: a run of at most 5 epochs)"),
        (["--lr", "0.01", "--warmup-epochs", "0"], 0.01, 0.0, None),
    ],
)
def test_a_short_run_resolves_its_automatic_rate_and_warmup_and_records_them(
    tmp_path, capsys, flags, lr, warmup, logged
):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    x = (rng.normal(size=(48, 6)) + y[:, None]).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = ["--dataset", f"npz:{tmp_path / 'd.npz'}", "--logdir", str(tmp_path / "logs")]
    args += ["--run-name", "r", "--model", "mlp", "--no-plots", "--projector-samples", "0"]
    status = main([*args, "-P", "4", "-K", "4", "--epochs", "2", *flags])
    assert status == 0
    err = capsys.readouterr().err
    if logged is None:
        assert "warm-up" not in err
    else:
        assert f"learning rate {lr:g}, warm-up {warmup:g} epoch {logged}" in err
    recorded = json.loads((tmp_path / "logs" / "r" / "config.json").read_text())
    assert (recorded["lr"], recorded["warmup_epochs"]) == (lr, warmup)


def test_the_time_is_estimated_before_the_first_epoch(straight_run):
    import re

    lines = open(os.path.join(straight_run, "train.log")).read().splitlines()
    before = [i for i, line in enumerate(lines) if "estimated time before training: " in line]
    epochs = [i for i, line in enumerate(lines) if re.search(r" epoch +1 \|", line)]
    assert len(before) == 1 and epochs and before[0] < epochs[0]
    assert re.search(r"\d s per epoch, .* for 3 epoch\(s\)", lines[before[0]])


def test_the_raw_pixel_baseline_is_scored_after_the_last_epoch(straight_run):
    """The baseline only feeds the report: the first epoch does not wait for it."""
    import re

    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.data.triplets import create_pairs
    from gluon_triplet.evaluation.metrics import evaluate_embeddings

    lines = open(os.path.join(straight_run, "train.log")).read().splitlines()
    raw = [i for i, line in enumerate(lines) if " raw pixels: " in line]
    epochs = [i for i, line in enumerate(lines) if re.search(r" epoch +\d+ \|", line)]
    assert len(raw) == 1 and epochs and raw[0] > max(epochs)
    config = json.loads(open(os.path.join(straight_run, "config.json")).read())
    metrics = json.loads(open(os.path.join(straight_run, "metrics.json")).read())
    data = load_dataset(config["dataset"])
    triplets = create_pairs(data.y_test, seed=config["seed"], warn=False)
    x = data.x_test.reshape(len(data.x_test), -1)
    expected = evaluate_embeddings(x, data.y_test, triplets=triplets, margin=config["margin"])
    assert metrics["raw_pixels"] == pytest.approx(expected)


# ------------ interrupts, resume, divergence, the lock, faults at an epoch's end


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


def test_non_finite_loss_names_epoch_batch_and_last_good_checkpoint(
    inputs, workdir, capsys, monkeypatch
):
    def poison(trainer):
        if (trainer.epoch, trainer.batch) == (2, 2):
            # NaN weights: the next batch's loss is NaN.
            for param in trainer.net.collect_params().values():
                param.set_data(param.data() * float("nan"))

    after_hook(monkeypatch, "on_batch_end", poison)
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    assert main([*args, "--run-name", "r", "--log-every", "1"]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [
        "error: non-finite training loss at epoch 2, batch 4; try a lower --lr; last good "
        "checkpoint: logs/r/checkpoint (epoch 1; its parameters are also "
        "logs/r/model-last.params)"
    ]
    assert checkpoint.read_manifest("logs/r/checkpoint")["epoch"] == 1


def test_training_holds_the_run_dir_lock_and_releases_it(inputs, workdir, capsys, monkeypatch):
    from gluon_triplet.runs.rundir import RunDir, RunDirInUse

    seen = []

    def check(trainer):
        if not seen:
            try:
                RunDir("logs/r").check_free()
                seen.append(None)
            except RunDirInUse as e:
                seen.append(str(e))

    after_hook(monkeypatch, "on_batch_end", check)
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


def test_offline_fallback_is_recorded_and_rereading_the_run_never_downloads(
    workdir, capsys, monkeypatch
):
    from gluon_triplet.data import mnist as data

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
