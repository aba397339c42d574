"""Subcommands: train -> embed -> evaluate (also on another dataset), view, launch dispatch."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import types
import urllib.request

import numpy as np
import pytest
from helpers import (
    FAST,
    error_lines,
    projector_points,
    snapshot,
)

from gluon_triplet import embed, evaluate, load_dataset, load_run
from gluon_triplet.cli import main, setup_logging

# Architecture and recipe spelled out: fast, and independent of changing defaults.
TRAIN = [
    "--dataset",
    "mnist-5k",
    "--model",
    "mlp",
    "--hidden",
    "32",
    "--embedding-size",
    "16",
    "--miner",
    "offline",
    "--optimizer",
    "sgd",
    "--lr",
    "0.5",
    "--batch-size",
    "512",
    "--epochs",
    "2",
    "--projector-samples",
    "30",
    "--projector-every",
    "1",
]


def assert_same_metrics(got, want):
    """``got`` read back from JSON (so per-class keys are strings) against ``want``."""
    got, want = dict(got), dict(want)
    per_class = {str(k): v for k, v in want.pop("per_class_precision_at_1").items()}
    assert got.pop("per_class_precision_at_1") == pytest.approx(per_class, rel=1e-9)
    core = {"precision_at_1", "map_at_r", "triplet_accuracy", "active_fraction", "recall_at_8"}
    assert core <= set(got)
    # The trainer may log more than the output embedding can tell (e.g. pre-normalisation
    # norms); every metric evaluate computes must agree.
    assert set(got) <= set(want)
    assert got == pytest.approx({k: want[k] for k in got}, rel=1e-9)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("cmd")
    capture = pytest.MonkeyPatch()
    out_path = logdir / "stdout.txt"
    # main() prints; a module fixture cannot use capsys, so redirect by hand.
    with open(out_path, "w") as out, open(logdir / "stderr.txt", "w") as err:
        capture.setattr(sys, "stdout", out)
        capture.setattr(sys, "stderr", err)
        try:
            code = main(["train", *TRAIN, "--logdir", str(logdir), "--run-name", "r"])
        finally:
            capture.undo()
            setup_logging(quiet=False)  # off the closed files
    assert code == 0, (logdir / "stderr.txt").read_text()
    return types.SimpleNamespace(
        dir=str(logdir / "r"),
        logdir=str(logdir),
        stdout=out_path.read_text(),
        stderr=(logdir / "stderr.txt").read_text(),
    )


def test_train_writes_snapshots_pictures_and_summary(run):
    files = set(os.listdir(run.dir))
    assert {"embedding", "embedding_000001", "embedding_000002", "raw_input"} <= files
    assert {"curves.png", "pca.png", "tsne.png", "pca-epochs.png"} <= files
    assert run.stdout.strip().splitlines()[-1].startswith("done: 2 epochs")
    table = run.stderr[run.stderr.index("summary:") :].splitlines()
    final = json.loads(open(os.path.join(run.dir, "metrics.json")).read())["final"]["test"]
    assert any(
        line.strip().startswith("epoch 2") and f"{final['precision_at_1']:.4f}" in line
        for line in table[1:5]
    ), table


def test_evaluate_reproduces_the_training_metrics(run, capsys):
    assert main(["evaluate", run.dir, "--params", "last", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert (doc["dataset"], doc["split"], doc["samples"]) == ("mnist-5k", "test", 1000)
    final = json.loads(open(os.path.join(run.dir, "metrics.json")).read())["final"]["test"]
    assert_same_metrics(doc["metrics"], final)
    assert err == ""
    # the human-readable form carries the same numbers
    assert main(["evaluate", run.dir, "--params", "last"]) == 0
    text = capsys.readouterr().out
    assert f"P@1 {final['precision_at_1']:.4f}" in text and "per-class P@1: 0 " in text


@pytest.fixture
def other_npz(tmp_path):
    """Another dataset of the same sample shape: transposed digits, 3 classes, 60 samples."""
    data = load_dataset("mnist-5k")
    keep = np.concatenate([np.flatnonzero(data.y_train == c)[:20] for c in range(3)])
    path = tmp_path / "other.npz"
    x = (data.x_train[keep].transpose(0, 2, 1) * 255).round().astype(np.uint8)
    np.savez(path, x=x, y=data.y_train[keep])
    return path, x.astype(np.float32) / 255, data.y_train[keep]


def test_embed_and_evaluate_another_dataset(run, other_npz, tmp_path, capsys):
    path, x, y = other_npz
    out = tmp_path / "emb.npy"
    args = ["--dataset", f"npz:{path}", "--split", "all"]
    assert main(["embed", run.dir, *args, "--out", str(out), "-q"]) == 0
    assert "embedded 60 all samples" in capsys.readouterr().out
    emb, labels = np.load(out), np.load(tmp_path / "emb-labels.npy")
    # npz:FILE splits 80/20 per class; --split all is train then test, so compare as sets
    net, config = load_run(run.dir)
    expected = embed(net, x)
    assert emb.shape == (60, 16) and emb.dtype == np.float32
    order = np.lexsort(emb.T)
    np.testing.assert_array_equal(emb[order], expected[np.lexsort(expected.T)])
    assert sorted(labels.tolist()) == sorted(y.tolist())
    assert main(["evaluate", run.dir, *args, "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    want = evaluate(
        emb, labels, margin=config.margin, seed=config.seed, per_class=True, clustering=True
    )
    assert_same_metrics(doc["metrics"], want)
    assert doc["samples"] == 60


def test_embed_npz_and_projector(run, tmp_path, capsys):
    out = tmp_path / "e.npz"
    proj = tmp_path / "proj"
    code = main(
        ["embed", run.dir, "--params", "last", "--out", str(out), "--projector", str(proj)]
        + ["--projector-samples", "25"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"gluon-triplet view {proj}" in printed
    with np.load(out) as f:
        assert sorted(f.files) == ["class_names", "embeddings", "labels"]
        emb, labels = f["embeddings"], f["labels"]
    net, _ = load_run(run.dir, params="last")
    data = load_dataset("mnist-5k")
    np.testing.assert_array_equal(emb, embed(net, data.x_test))
    np.testing.assert_array_equal(labels, data.y_test)
    tensors = np.loadtxt(proj / "embedding" / "tensors.tsv", delimiter="\t", ndmin=2)
    assert tensors.shape == (25, 16)
    # every projector row is one of the embedded rows
    d = ((tensors[:, None, :] - emb[None].astype(np.float64)) ** 2).sum(-1)
    assert d.min(axis=1).max() < 1e-6


def test_bad_inputs_one_error_line_nothing_written(run, tmp_path, capsys):
    precious = tmp_path / "taken.npy"
    precious.write_bytes(b"keep")
    small = tmp_path / "small.npz"
    rng = np.random.default_rng(0)
    np.savez(small, x=rng.random((40, 10, 10)).astype(np.float32), y=np.arange(40) % 4)
    cases = [
        (["embed", str(tmp_path / "nope"), "--out", str(tmp_path / "a.npy")], "does not exist"),
        (["evaluate", str(tmp_path / "nope")], "does not exist"),
        (["evaluate", str(tmp_path)], "no config.json"),
        (["evaluate", run.dir, "--params", "x"], "no parameter file 'x'"),
        (["evaluate", run.dir, "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["evaluate", run.dir, "--dataset", f"npz:{small}"], "(10, 10) do not fit the model"),
        (["embed", run.dir, "--out", str(precious)], "already exists"),
        (["embed", run.dir, "--out", str(tmp_path / "a.txt")], "must end in .npy or .npz"),
        (["view", str(tmp_path / "nope")], "does not exist"),
    ]
    before = sorted(os.listdir(tmp_path))
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        lines = error_lines(err)
        assert len(lines) == 1 and expected in lines[0], (argv, err)
        assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before
    assert precious.read_bytes() == b"keep"


def test_launch_dispatch(monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("gluon_triplet.training.launch")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "gluon_triplet.training.launch", fake)
    assert main(["launch", "-n", "2", "--", "--epochs", "1"]) == 7
    assert seen == [["-n", "2", "--", "--epochs", "1"]]


def test_unknown_subcommand_lists_the_valid_ones(capsys):
    assert main(["trian", "--epochs", "1"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: unknown subcommand 'trian'; choose one of: embed, evaluate, export, index, "
        "launch, pack, search, serve, train, view (or train options alone)"
    ]


def test_view_serves_the_run_and_stops_with_its_parent(run):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from gluon_triplet.cli import main; sys.exit(main(sys.argv[1:]))",
            "view",
            run.logdir,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    try:
        reader.join(timeout=120)
        assert lines and lines[0].startswith("TensorBoard: http://127.0.0.1:"), lines
        url = lines[0].split()[1]
        with urllib.request.urlopen(f"{url}data/plugin/projector/runs", timeout=30) as r:
            assert "r" in json.loads(r.read())
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        # TensorBoard went with it: nothing listens on the port any more
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------- --projector-samples and --params


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
