import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gluon_triplet.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--epochs", "1", "--batch-size", "256", "--projector-samples", "40"]


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_end_to_end_run_train_script(tmp_path):
    """The real entry point in a fresh process: trains, writes every output, prints a summary."""
    logdir = tmp_path / "logs"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "run_train.py"),
            "--dataset",
            "mnist-5k",
            "--logdir",
            str(logdir),
            "--epochs",
            "2",
            "--projector-samples",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = os.listdir(logdir)
    assert run.endswith("-mnist-5k")
    files = set(os.listdir(logdir / run))
    assert {
        "config.json",
        "metrics.json",
        "model-best.params",
        "model-last.params",
        "train.log",
        "projector_config.pbtxt",
        "embedding",
        "raw_input",
    } <= files
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert json.loads((logdir / run / "config.json").read_text())["epochs"] == 2
    metrics = json.loads((logdir / run / "metrics.json").read_text())
    assert metrics["finished"] and len(metrics["history"]) == 3
    assert metrics["dataset"] == {
        "name": "mnist-5k",
        "requested": "mnist-5k",
        "source": metrics["dataset"]["source"],
        # 4,000 training digits, of which 10% of each class validate
        "train": 3600,
        "validation": 400,
        "validation_mode": "per-class",
        "validation_per_class_cap": 200,  # --eval-samples 2000 over 10 classes
        "test": 1000,
        "open_set": False,
        "unseen_test_classes": 0,
    }
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("done: 2 epochs") and "P@1" in summary
    assert "tensorboard --logdir" in summary
    assert "context: cpu(0) (no GPU visible to MXNet)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_file_and_flag_override(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": "mnist-5k", "epochs": 3, "hidden": [32]}))
    args = [
        "--config",
        str(cfg),
        "--epochs",
        "1",
        "--logdir",
        str(tmp_path),
        "--run-name",
        "r",
        "--batch-size",
        "512",
        "--projector-samples",
        "0",
        "-q",
    ]
    assert main(args) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["hidden"] == [32] and saved["dataset"] == "mnist-5k"


def test_existing_run_name_is_refused_and_untouched(tmp_path, capsys):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "model-best.params").write_bytes(b"precious")
    code = main(["--dataset", "mnist-5k", "--logdir", str(tmp_path), "--run-name", "mine", *FAST])
    assert code == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"error: run directory {str(run)!r} already exists; choose another --run-name"
    ]
    assert (run / "model-best.params").read_bytes() == b"precious"
    assert os.listdir(run) == ["model-best.params"]


def write_idx_dir(path, images, labels):
    path.mkdir()
    for split in ("train", "t10k"):
        with gzip.open(path / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(
                bytes([0, 0, 8, 3]) + np.array(images.shape, ">u4").tobytes() + images.tobytes()
            )
        with gzip.open(path / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(
                bytes([0, 0, 8, 1]) + np.array(labels.shape, ">u4").tobytes() + labels.tobytes()
            )


def make_bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 6, 6), dtype=np.uint8)
    one_class = tmp_path / "one_class"
    write_idx_dir(one_class, images, np.zeros(40, np.uint8))
    corrupt = tmp_path / "corrupt"
    write_idx_dir(corrupt, images, np.arange(40, dtype=np.uint8) % 4)
    raw = gzip.decompress((corrupt / "train-images-idx3-ubyte.gz").read_bytes())
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    return {
        "unknown dataset": (["--dataset", "cifar"], "unknown dataset 'cifar'"),
        "missing dir": (["--dataset", f"idx:{tmp_path / 'nope'}"], "nope"),
        "corrupt idx": (["--dataset", f"idx:{corrupt}"], "truncated"),
        "one class": (["--dataset", f"idx:{one_class}"], "at least 2 classes"),
        "bad ctx": (["--dataset", "mnist-5k", "--ctx", "gpu:x"], "--ctx"),
        "no gpu": (["--dataset", "mnist-5k", "--ctx", "gpu"], "no GPU visible"),
        "bad value": (["--dataset", "mnist-5k", "--lr", "-1"], "lr must be > 0"),
        "bad config": (["--config", str(tmp_path / "missing.json")], "missing.json"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown dataset",
        "missing dir",
        "corrupt idx",
        "one class",
        "bad ctx",
        "no gpu",
        "bad value",
        "bad config",
    ],
)
def test_bad_input_one_error_line_nothing_written(tmp_path, capsys, case):
    args, expected = make_bad_inputs(tmp_path)[case]
    logdir = tmp_path / "logs"
    logdir.mkdir()
    (logdir / "earlier-run").mkdir()
    code = main([*args, "--logdir", str(logdir), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert os.listdir(logdir) == ["earlier-run"]


def test_help_states_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in (
        "default: mnist",
        "default: 1024",
        "default: auto = 0.001, or 0.002 in runs of at most 5 epochs",
        "default: 10",
        "default: auto",
        "default: semi-hard",
        "default: 1000",
    ):
        assert text in out


def test_preset_json_and_flags_layer_in_that_order(tmp_path):
    from gluon_triplet.cli import build_parser, config_from_args

    def config(*argv):
        return config_from_args(build_parser().parse_args(list(argv)))

    ref = config("--preset", "reference")
    assert (ref.miner, ref.optimizer, ref.lr, ref.margin, ref.normalize) == (
        "offline",
        "sgd",
        0.05,
        1.0,
        False,
    )
    assert ref.model == "mlp" and ref.hidden == (256,)
    # A JSON file sets only its own keys on top of the preset; flags win over both.
    (tmp_path / "c.json").write_text(json.dumps({"lr": 0.1, "epochs": 2}))
    c = config("--preset", "reference", "--config", str(tmp_path / "c.json"), "--epochs", "4")
    assert (c.miner, c.lr, c.epochs) == ("offline", 0.1, 4)
    assert config("--no-normalize").normalize is False and config().normalize is True


def test_config_file_is_read_once(tmp_path, monkeypatch):
    import builtins
    import os

    from gluon_triplet.cli import build_parser, config_from_args

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 0.1, "epochs": 2}))
    opened, real_open = [], builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    c = config_from_args(build_parser().parse_args(["--config", str(path)]))
    assert len(opened) == 1
    assert (c.lr, c.epochs, c.miner) == (0.1, 2, "semi-hard")
