"""Distributed training: rank sharding, the kvstore factory and the ps-lite launcher.

The job tests run real ps-lite jobs (scheduler, server, workers) on 127.0.0.1 through
:func:`gluon_triplet.training.launch.launch`, always with a timeout.
"""

import io
import json
import os
import re
import shutil
import signal
import sys
import time

import dist_worker
import mxnet as mx
import numpy as np
import pytest

from gluon_triplet.config import PRESETS, Config
from gluon_triplet.data.datasets import load_dataset
from gluon_triplet.data.triplets import TripletDataset
from gluon_triplet.nets.zoo import build_model
from gluon_triplet.training.launch import launch
from gluon_triplet.training.launch import main as launch_main
from gluon_triplet.training.launch import run_job as launch_job
from gluon_triplet.training.trainer import TripletTrainer, create_kvstore, set_seed

HERE = os.path.dirname(os.path.abspath(__file__))
JOB_TIMEOUT = 120  # seconds; a job takes ~10 s on 2 cores


class FakeKVStore:
    """Just what TripletTrainer reads before its first step: no ps-lite job needed."""

    def __init__(self, rank, num_workers, type="dist_sync"):
        self.rank, self.num_workers, self.type = rank, num_workers, type


@pytest.fixture(scope="module")
def small():
    data = load_dataset("mnist-5k")
    return data.x_train[::5], data.y_train[::5]  # the file is sorted by class


def sharded_trainer(small, kvstore, test=(None, None), **overrides):
    config = Config(**{**PRESETS["reference"], "epochs": 1, "seed": 3, **overrides})
    set_seed(config.seed)
    train_set = TripletDataset(*small, seed=config.seed)
    net = build_model("mlp", ctx=[mx.cpu()])
    return TripletTrainer(
        net, train_set, config, [mx.cpu()], test_x=test[0], test_y=test[1], kvstore=kvstore
    )


@pytest.mark.parametrize("workers", [2, 3])
def test_offline_shards_are_the_single_process_batches_cut_in_pieces(small, workers):
    one = sharded_trainer(small, None, batch_size=40 * workers).strategy.batches().asnumpy()
    shards = [
        sharded_trainer(small, FakeKVStore(r, workers), batch_size=40).strategy.batches().asnumpy()
        for r in range(workers)
    ]
    # Every worker gets the same number of batches (dist_sync would wait forever otherwise),
    # and global batch b is worker 0's batch b, then worker 1's, ...
    assert {s.shape for s in shards} == {(len(one), 40, 3)}
    np.testing.assert_array_equal(np.concatenate(shards, axis=1), one)
    trained = np.unique(one.reshape(-1, 3), axis=0)
    assert len(trained) == len(sharded_trainer(small, None).train_set.triplets)


@pytest.mark.parametrize("workers", [2, 3])
def test_online_shards_deal_the_pk_batches_round_robin(small, workers):
    settings = {"miner": "batch-hard", "pk_classes": 4, "pk_samples": 4}
    one = sharded_trainer(small, None, **settings).strategy.batches().asnumpy()
    shards = [
        sharded_trainer(small, FakeKVStore(r, workers), **settings).strategy.batches().asnumpy()
        for r in range(workers)
    ]
    per_worker = -(-len(one) // workers)
    assert {s.shape for s in shards} == {(per_worker, 16)}
    dealt = np.stack(shards, axis=1).reshape(-1, 16)
    # The epoch's batches in order, the last group topped up from the epoch's start.
    expected = np.concatenate([one, one])[: per_worker * workers]
    np.testing.assert_array_equal(dealt, expected)


def test_only_rank_0_evaluates(small):
    assert "precision_at_1" in sharded_trainer(small, FakeKVStore(0, 2), test=small).evaluate()
    assert sharded_trainer(small, FakeKVStore(1, 2), test=small).evaluate() == {}


def test_create_kvstore_refuses_to_run_outside_a_job(monkeypatch):
    for name in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert create_kvstore("device") is None
    with pytest.raises(
        ValueError, match="not set: DMLC_ROLE, DMLC_PS_ROOT_URI.*gluon-triplet launch"
    ):
        create_kvstore("dist_sync")
    monkeypatch.setenv("DMLC_ROLE", "worker")
    with pytest.raises(ValueError, match="ps-lite worker .* but --kvstore is 'device'"):
        create_kvstore("device")


def test_launch_hint_is_a_command_that_works_as_printed(monkeypatch, tmp_path):
    # rendered by report.command like every printed command; the placeholders stay readable
    for name in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT"):
        monkeypatch.delenv(name, raising=False)
    script = os.path.join(os.path.dirname(sys.executable), "gluon-triplet")
    hint = "start one with: {} launch -n WORKERS -s SERVERS -- --kvstore dist_async ...$"
    monkeypatch.setattr(shutil, "which", lambda name: script)
    with pytest.raises(ValueError, match=re.escape(hint.format("gluon-triplet")[:-1]) + "$"):
        create_kvstore("dist_async")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # not on PATH: the script's path
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(hint.format(script)[:-1]) + "$"):
        create_kvstore("dist_async")


def job_children():
    """Processes whose parent is this one and that run a ps-lite role or a test worker."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and ("mxnet" in cmdline or "gluon_triplet" in cmdline):
            found.append(cmdline)
    return found


def run_job(command, workers=2, timeout=JOB_TIMEOUT):
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    code = launch(command, workers, 1, timeout=timeout, stdout=out, stderr=err)
    # launch returns only once every process of the job has ended
    assert job_children() == []
    return code, out.getvalue(), err.getvalue(), time.monotonic() - start


def test_dist_sync_workers_agree_with_one_process_on_their_union(tmp_path):
    worker = [sys.executable, os.path.join(HERE, "dist_worker.py"), str(tmp_path), "dist_sync"]
    code, out, err, _ = run_job(worker)
    assert code == 0, out + err
    assert "[worker 0] saved" in out and "[worker 1] saved" in out
    results = [np.load(tmp_path / f"worker-{rank}.npz") for rank in (0, 1)]
    params = [[r[f"arr_{i}"] for i in range(len(r.files) - 2)] for r in results]
    assert [int(r["workers"]) for r in results] == [2, 2]
    # Both pulled the same parameters from the server.
    for a, b in zip(*params):
        np.testing.assert_array_equal(a, b)

    # One process on global batches of 2 x 64: the union of the two workers' batches.
    reference = dist_worker.make_trainer("device", 2 * dist_worker.SETTINGS["batch_size"])
    reference.fit()
    assert reference.num_batches == int(results[0]["num_batches"])
    expected = [p.data().asnumpy() for p in reference.net.collect_params().values()]
    for got, want in zip(params[0], expected):
        # The server sums two half-batch gradients, one process sums one batch's:
        # float32 rounding only.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # ... which did learn something.
    losses = [record["train"]["loss"] for record in reference.history[1:]]
    assert losses[-1] < losses[0]


def test_launch_trains_through_the_cli_and_only_rank_0_writes(tmp_path, capsys):
    logdir = tmp_path / "logs"
    argv = ["-n", "2", "-s", "1", "--timeout", str(JOB_TIMEOUT), "--"]
    argv += ["--preset", "reference", "--dataset", "mnist-5k", "--epochs", "1"]
    argv += ["--logdir", str(logdir), "--projector-samples", "0", "--no-plots"]
    code = launch_main(argv)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert job_children() == []
    # The prefix is the kvstore rank each worker reports.
    assert "[worker 0] kvstore dist_sync: worker 0 of 2" in err
    assert "[worker 1] kvstore dist_sync: worker 1 of 2" in err
    assert "[worker 1] done: worker 1 of 2" in out
    (run_dir,) = logdir.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["workers"] == 2
    assert metrics["final"]["epoch"] == 1 and "precision_at_1" in metrics["final"]["test"]
    assert (run_dir / "model-last.params").exists()


def test_rank_0_failing_after_joining_the_job_ends_it_with_its_error(tmp_path, capsys):
    # The run directory is refused after the kvstore exists: rank 0 must not stop the
    # servers under worker 1 nor wait for it, and the earlier run stays as it was.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("earlier run")
    argv = ["-n", "2", "--timeout", str(JOB_TIMEOUT), "--", "--preset", "reference"]
    argv += ["--dataset", "mnist-5k", "--logdir", str(tmp_path), "--run-name", "taken"]
    code = launch_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert job_children() == []
    # Every worker checks the run directory before it joins; whichever fails first ends it.
    assert re.search(r"\[worker [01]\] error: run directory", err), err
    assert re.match(r"error: worker [01] exited with status 2", err.rstrip().splitlines()[-1])
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert os.listdir(tmp_path / "taken") == ["keep.txt"]


def test_a_failing_worker_stops_the_whole_job():
    failing = [sys.executable, "-c", "import sys; print('about to fail'); sys.exit(3)"]
    code, out, err, elapsed = run_job(failing)
    assert code == 3
    # The first failure stops the job, maybe before the other worker got to print.
    assert "[worker 0] about to fail" in out or "[worker 1] about to fail" in out
    assert "error: worker " in err and "exited with status 3" in err
    assert elapsed < 30


def test_the_timeout_stops_a_job_that_hangs():
    hanging = [sys.executable, "-c", "import time; time.sleep(300)"]
    code, _, err, elapsed = run_job(hanging, workers=1, timeout=2)
    assert code == 1
    assert "error: timeout: the job did not finish within 2s" in err
    assert "worker 0" in err and elapsed < 30


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-n", "2", "--", "--kvstore", "device"], "launch needs --kvstore dist_sync"),
        (["-n", "0"], "at least 1 worker"),
        (["-s", "1"], "needs -n WORKERS"),
        (["-n", "1", "--timeout", "0"], "--timeout must be > 0"),
    ],
)
def test_launch_refuses_bad_options_before_starting_anything(argv, message, capsys):
    assert launch_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def processes_of_job(port):
    """Pids of the processes whose environment names the job's scheduler port."""
    needle = f"DMLC_PS_ROOT_PORT={port}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    "signum, code",
    [(signal.SIGHUP, 129), (signal.SIGQUIT, 131), (signal.SIGTERM, 143)],
)
def test_a_stop_signal_to_the_launcher_stops_every_process_of_the_job(signum, code, capsys):
    """Each worker, once running, sends the launcher the signal (the second one arrives
    during the teardown): the launcher stops the job and returns 128 + the signal number,
    leaving no process behind."""
    name = signal.Signals(signum).name
    worker = [
        sys.executable,
        "-c",
        f"import os, signal, time; os.kill(os.getppid(), signal.{name}); time.sleep(300)",
    ]
    before = signal.getsignal(signum)
    start = time.monotonic()
    code_got = launch_job(worker, 2, 1, timeout=JOB_TIMEOUT)
    err = capsys.readouterr().err
    assert code_got == code, err
    assert err.strip().splitlines()[-1] == (
        f"error: interrupted by {name}; stopped every process of the job"
    )
    port = re.search(r"scheduler on 127\.0\.0\.1:(\d+)", err).group(1)
    assert processes_of_job(port) == [] and job_children() == []
    assert signal.getsignal(signum) is before  # restored
    assert time.monotonic() - start < JOB_TIMEOUT
