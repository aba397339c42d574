"""--resume refuses data that changed since the run started, saying what changed."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from gluon_triplet.cli import main
from gluon_triplet.data.fingerprint import data_fingerprint, fingerprint_changes

FAST = ["--model", "mlp", "--hidden", "16", "--embedding-size", "8", "--epochs", "1"]
FAST += ["--projector-samples", "0", "--no-plots", "-q", "--image-size", "8x8"]


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def write_folder(root, sizes=(8, 10, 12), per_class=10):
    """Class c<i> holds pictures of side sizes[i] (so files of two classes differ in size)."""
    rng = np.random.default_rng(0)
    for c, side in enumerate(sizes):
        os.makedirs(root / f"c{c}")
        for i in range(per_class):
            pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


def snapshot(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[p] = open(p, "rb").read()
    return out


@pytest.fixture
def stopped_run(tmp_path, capsys):
    """A run on a folder that stopped after epoch 1 of 2 (a finished 1-epoch run whose
    config asks for 2 epochs and whose metrics are not finished: what --resume sees)."""
    folder = write_folder(tmp_path / "pics")
    run = tmp_path / "logs" / "r"
    args = [*FAST, "--dataset", f"folder:{folder}", "--logdir", str(tmp_path / "logs")]
    assert main([*args, "--run-name", "r"]) == 0
    for name, key, value in (("config.json", "epochs", 2), ("metrics.json", "finished", False)):
        doc = json.loads((run / name).read_text())
        doc[key] = value
        (run / name).write_text(json.dumps(doc))
    capsys.readouterr()
    return {"run": run, "folder": folder}


def refused(stopped_run, capsys, changes):
    run = stopped_run["run"]
    before = snapshot(run)
    assert main(["--resume", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"error: folder:{stopped_run['folder']} changed since {run} started: {changes}; "
        "resuming would mix two datasets in one history: restore the data, start a new run, "
        "or pass --accept-changed-data"
    ]
    assert "Traceback" not in err
    assert snapshot(run) == before


def test_resume_refuses_a_file_added_to_a_class(stopped_run, capsys):
    shutil.copy(stopped_run["folder"] / "c1" / "0.png", stopped_run["folder"] / "c1" / "new.png")
    refused(stopped_run, capsys, "1 file added under c1/")


def test_resume_refuses_classes_whose_files_were_swapped(stopped_run, capsys):
    folder = stopped_run["folder"]
    os.rename(folder / "c0", folder / "tmp")
    os.rename(folder / "c1", folder / "c0")
    os.rename(folder / "tmp", folder / "c1")
    refused(
        stopped_run,
        capsys,
        "10 files changed (size or time) under c0/, 10 files changed (size or time) under c1/",
    )


def test_accept_changed_data_continues_with_a_warning(stopped_run, capsys):
    folder, run = stopped_run["folder"], stopped_run["run"]
    os.unlink(folder / "c2" / "9.png")
    assert main(["--resume", str(run), "-q", "--accept-changed-data"]) == 0
    err = capsys.readouterr().err
    assert (
        f"WARNING: folder:{folder} changed (1 file removed under c2/); continuing on it "
        "(--accept-changed-data)" in err.splitlines()
    )
    assert json.loads((run / "metrics.json").read_text())["finished"]
    # The record now holds the data the run finished on.
    recorded = json.loads((run / "data.json").read_text())
    assert fingerprint_changes(recorded, data_fingerprint(f"folder:{folder}")) is None


def test_a_run_without_a_data_record_resumes_with_an_info_line(stopped_run, capsys):
    run = stopped_run["run"]
    os.unlink(run / "data.json")  # as a run directory from before data records
    assert main(["--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert (
        f"{run} records no fingerprint of its data (it predates them): cannot check that "
        f"folder:{stopped_run['folder']} is unchanged; recording it now"
    ) in err.splitlines()
    assert (run / "data.json").exists()


def test_accept_changed_data_needs_resume(capsys):
    assert main(["--accept-changed-data", "--epochs", "1"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: --accept-changed-data only applies with --resume RUN_DIR"
    ]


def test_file_fingerprints_tell_size_and_content_changes(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 3)), y=np.arange(4))
    spec = f"npz:{path}"
    first = data_fingerprint(spec)
    assert fingerprint_changes(first, data_fingerprint(spec)) is None
    stat = os.stat(path)
    np.savez(path, x=np.ones((4, 3)), y=np.arange(4))  # same size, other bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old time
    assert fingerprint_changes(first, data_fingerprint(spec)) == (
        f"{path} changed (same size, other content)"
    )
    np.savez(path, x=np.ones((5, 3)), y=np.arange(5))
    size = os.path.getsize(path)
    assert fingerprint_changes(first, data_fingerprint(spec)) == (
        f"{path} changed size ({first['files'][str(path)]['size']} -> {size} bytes)"
    )
    os.unlink(path)
    assert fingerprint_changes(first, data_fingerprint(spec)) == f"{path} is missing"
