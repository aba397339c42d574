"""pack, export and index on a full or read-only disk, and pack onto a prefix another
process packs: one ``error:`` line naming the path and the free space, exit 2, nothing
left behind. The disks are real tmpfs mounts (root only; skipped where mounting is not
permitted)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    FAULTED,
    RESUMABLE,
    EpochEndFault,
    assert_same_run,
    error_lines,
    final_state,
    interrupt_at,
    mounted_tmpfs,
    no_space,
    run_files,
    temporary_files,
)
from PIL import Image

from gluon_triplet.cli import main
from gluon_triplet.data.recordio import open_rec
from gluon_triplet.runs import checkpoint
from gluon_triplet.runs.report import command

TRAIN = ["--model", "mlp", "--hidden", "256", "--embedding-size", "16", "--epochs", "1"]
TRAIN += ["--projector-samples", "0", "--no-plots", "-q"]

# Holds a lock file as locks.exclusive_lock does (flock, "PID HOST" inside).
HOLDER = (
    "import fcntl, os, socket, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.write(fd, b'%d %s\\n' % (os.getpid(), socket.gethostname().encode()))\n"
    "print('locked', flush=True); sys.stdin.readline()"
)


@pytest.fixture
def tmpfs(tmp_path):
    """A 256 KiB tmpfs; ``fill(mount)`` uses up its space, ``read_only(mount)`` remounts it."""
    with mounted_tmpfs(tmp_path / "disk", "256k") as mount:
        yield mount


def fill(mount, keep=0):
    """Write a hidden filler file until ``keep`` bytes are free (0: the disk is full)."""
    with open(mount / ".filler", "wb") as f:
        try:
            f.write(b"\0" * (os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize - keep))
            f.flush()
        except OSError:
            pass


def read_only(mount):
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


def listing(mount):
    return sorted(f for f in os.listdir(mount) if f != ".filler")


def pictures(root, classes=2, per_class=12, side=64):
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(root / f"c{c}", exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained 1-epoch MLP run on a tiny npz (its parameters take about 80 KiB)."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(3, 8, 8))[y] + rng.normal(size=(60, 8, 8)) * 0.1).astype(np.float32)
    np.savez(root / "d.npz", x=x, y=y)
    args = [*TRAIN, "--dataset", f"npz:{root / 'd.npz'}", "--logdir", str(root / "logs")]
    assert main([*args, "--run-name", "r"]) == 0
    return {"dir": str(root / "logs" / "r"), "data": f"npz:{root / 'd.npz'}"}


def one_line_with_free_space(err, path, reason):
    (line,) = error_lines(err)
    where = re.escape(os.path.dirname(path))
    pattern = rf"error: cannot write {re.escape(path)}: {reason} \([0-9.]+ (bytes|KiB)"
    assert re.fullmatch(pattern + rf" free in {where}\)", line), line
    assert "Traceback" not in err and "Exception ignored" not in err


def test_pack_onto_a_full_disk_leaves_nothing(tmp_path, tmpfs, capsys):
    src = pictures(tmp_path / "pics")  # 24 PNGs of 12 KiB: more than the 256 KiB
    prefix = str(tmpfs / "p")
    assert main(["pack", str(src), "--out", prefix, "-q"]) == 2
    err = capsys.readouterr().err
    one_line_with_free_space(err, prefix + ".rec", ".*")
    assert listing(tmpfs) == []  # no .tmp-* files, no lock file


def test_pack_onto_a_read_only_mount(tmp_path, tmpfs, capsys):
    src = pictures(tmp_path / "pics", per_class=2)
    read_only(tmpfs)
    prefix = str(tmpfs / "p")
    assert main(["pack", str(src), "--out", prefix, "-q"]) == 2
    one_line_with_free_space(capsys.readouterr().err, prefix + ".rec", "Read-only file system")


def test_pack_onto_a_prefix_another_process_packs(tmp_path, capsys):
    src = pictures(tmp_path / "pics", per_class=3, side=8)
    prefix = str(tmp_path / "p")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, prefix + ".lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(["pack", str(src), "--out", prefix, "-q"]) == 2
        err = capsys.readouterr().err
        assert error_lines(err) == [
            f"error: {prefix} is being packed by process {holder.pid} on "
            f"{socket.gethostname()} (it holds {prefix}.lock); wait for it to finish, or "
            "choose another --out"
        ]
        assert sorted(os.listdir(tmp_path)) == ["p.lock", "pics"]
    finally:
        holder.communicate("\n", timeout=60)
    os.unlink(prefix + ".lock")  # the holder was not a real pack: it leaves its file
    assert main(["pack", str(src), "--out", prefix, "-q"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["p.idx", "p.json", "p.rec", "pics"]
    _, labels, _ = open_rec(prefix)
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    # A second pack after the first finished: the outputs exist.
    assert main(["pack", str(src), "--out", prefix, "-q"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {prefix}.rec already exists; choose another --out"
    ]


def test_pack_resize_skips_a_strip_it_cannot_encode(tmp_path, capsys):
    src = pictures(tmp_path / "pics", per_class=3, side=8)
    strip = src / "c0" / "strip.png"
    Image.fromarray(np.zeros((5000, 1), np.uint8)).save(strip)
    prefix = str(tmp_path / "p")
    assert main(["pack", str(src), "--out", prefix, "--resize", "20"]) == 0
    out, err = capsys.readouterr()
    (warning,) = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert warning == (
        "WARNING: 1 picture(s) cannot be resized to 20 pixels on the shorter side (first: "
        f"{strip}: 20 x 100000 pixels after resizing, beyond JPEG's largest side of 65500 "
        "(--encoding .png takes it)); skipped"
    )
    assert "skipped 1" in out
    _, labels, _ = open_rec(prefix)
    assert len(labels) == 6


@pytest.mark.parametrize("fmt", ["mxnet", "onnx"])
def test_export_onto_a_full_disk(run, tmpfs, capsys, fmt):
    fill(tmpfs)
    out = str(tmpfs / "e")
    assert main(["export", run["dir"], "--format", fmt, "--out", out, "-q"]) == 2
    one_line_with_free_space(capsys.readouterr().err, out, ".*")
    assert listing(tmpfs) == []


def test_export_onto_a_read_only_mount(run, tmpfs, capsys):
    read_only(tmpfs)
    out = str(tmpfs / "e")
    assert main(["export", run["dir"], "--format", "mxnet", "--out", out, "-q"]) == 2
    one_line_with_free_space(capsys.readouterr().err, out, "Read-only file system")


def test_index_onto_a_full_disk_names_the_file(run, tmpfs, capsys):
    fill(tmpfs)
    out = str(tmpfs / "ix")
    args = ["index", run["dir"], "--dataset", run["data"], "--out", out, "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    one_line_with_free_space(err, os.path.join(out, "index.faiss"), ".*")
    assert listing(tmpfs) == []


def test_index_of_a_path_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "not-an-index"
    path.write_text("x")
    assert main(["search", str(path), "--query", "npz:nowhere.npz", "-q"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {str(path)!r} is a file, not an index directory"
    ]


# --------------------------------------------------- disk full at an epoch's end


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
