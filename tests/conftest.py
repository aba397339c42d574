"""Fixtures several test files share: tiny inputs (good and bad), a directory to run the
CLI in, and reference runs that resumed or faulted runs must equal.

Nothing here imports gluon_triplet when pytest loads it: the package sets OpenMP variables
before MXNet loads, and the tests run with MXNet imported first, as each file does.
"""

import gzip
import os
import signal
import zipfile

import numpy as np
import pytest
from helpers import (
    FAULTED,
    RESUMABLE,
    EpochEndFault,
    Exploit,
    idx_bytes,
    idx_dir,
    images_labels,
    interrupt_at,
    npz,
    xy,
)


@pytest.fixture(scope="session")
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


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The CLI runs here with --logdir logs, which holds an earlier run to protect."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs" / "earlier-run").mkdir(parents=True)
    (tmp_path / "logs" / "earlier-run" / "model-best.params").write_bytes(b"precious")
    return tmp_path


@pytest.fixture(scope="session")
def straight_run(inputs, tmp_path_factory):
    """The uninterrupted reference run."""
    from gluon_triplet.cli import main

    logdir = tmp_path_factory.mktemp("straight")
    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", str(logdir)]
    assert main([*args, "--run-name", "r"]) == 0
    return str(logdir / "r")


@pytest.fixture
def interrupted_run(inputs, workdir, monkeypatch, capsys):
    """logs/r: interrupted in epoch 2, with the checkpoint of epoch 1."""
    from gluon_triplet.cli import main

    args = [*RESUMABLE, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", "logs"]
    with monkeypatch.context() as m:
        interrupt_at(m, epoch=2, batch=1, signum=signal.SIGINT)
        assert main([*args, "--run-name", "r"]) == 130
    capsys.readouterr()
    return workdir / "logs" / "r"


@pytest.fixture(scope="session")
def epoch_end_writes(inputs, tmp_path_factory):
    """The uninterrupted run, and the files written at the end of its last epoch."""
    from gluon_triplet.cli import main

    logdir = tmp_path_factory.mktemp("writes")
    args = [*FAULTED, "--dataset", f"idx:{inputs['good_idx']}", "--logdir", str(logdir)]
    with pytest.MonkeyPatch.context() as m:
        probe = EpochEndFault(m, 2)
        assert main([*args, "--run-name", "r"]) == 0
    return str(logdir / "r"), probe.writes
