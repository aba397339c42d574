"""RunDir: creating, checking and locking a run directory; every name spelled once."""

import json
import os
import socket
import subprocess
import sys

import pytest

from gluon_triplet.config import Config, ConfigError
from gluon_triplet.runs.rundir import RunDir, RunDirInUse

# Another process holding a run directory's lock as RunDir.lock does (flock, PID inside),
# without importing MXNet.
HOLDER = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.ftruncate(fd, 0); os.write(fd, b'%d\\n' % os.getpid())\n"
    "print('locked', flush=True); sys.stdin.readline()"
)


def make_run(path, **files):
    os.makedirs(path)
    Config(epochs=3).save(os.path.join(path, RunDir.CONFIG))
    for name, content in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(content)
    return RunDir(path)


def test_names_and_paths(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.path == str(tmp_path / "r") and os.fspath(run) == run.path and str(run) == run.path
    assert run.config_path == os.path.join(run.path, "config.json")
    assert run.metrics_path == os.path.join(run.path, "metrics.json")
    assert run.checkpoint_dir == os.path.join(run.path, "checkpoint")
    assert run.log_path == os.path.join(run.path, "train.log")
    assert RunDir.PARAMS == {"best": "model-best.params", "last": "model-last.params"}


def test_create_named_refuses_an_existing_one(tmp_path):
    run = RunDir.create(str(tmp_path / "logs"), "r")
    assert os.path.isdir(run.path) and os.listdir(run.path) == []
    (tmp_path / "logs" / "r" / "keep").write_text("x")
    with pytest.raises(FileExistsError, match="already exists; choose another --run-name"):
        RunDir.create(str(tmp_path / "logs"), "r")
    with pytest.raises(FileExistsError, match="already exists"):
        RunDir.check_new(str(tmp_path / "logs"), "r")
    assert os.listdir(run.path) == ["keep"]


def test_create_default_names_never_collide(tmp_path):
    logdir = str(tmp_path / "logs")
    names = {RunDir.create(logdir, dataset="idx:/some where/x").path for _ in range(3)}
    assert len(names) == 3
    assert all(os.path.basename(n).split("-", 2)[2].startswith("idx_") for n in names)


def test_check_new_writes_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        RunDir.check_new(str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        RunDir.check_new(str(tmp_path / "file" / "logs"))
    RunDir.check_new(str(tmp_path / "new" / "logs"), "r")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_open_and_params(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory '.*nope' does not exist"):
        RunDir.open(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="is not a run directory: it has no config.json"):
        RunDir.open(tmp_path)
    run = RunDir.open(make_run(str(tmp_path / "r"), **{"model-last.params": "p"}).path)
    assert run.load_config().epochs == 3
    assert run.params_path("last") == os.path.join(run.path, "model-last.params")
    with pytest.raises(FileNotFoundError, match=r"no parameter file 'model-best.params' \(have: "):
        run.params_path("best")


def test_a_bad_config_is_named_once(tmp_path):
    run = make_run(str(tmp_path / "r"))
    with open(run.config_path, "w") as f:
        json.dump({"epochs": "3"}, f)
    with pytest.raises(ConfigError) as e:
        run.load_config()
    assert str(e.value) == f"{run.config_path}: config key 'epochs' must be of type int, got '3'"


def test_load_config_reads_the_file_once(tmp_path, monkeypatch):
    import builtins

    run = make_run(str(tmp_path / "r"))
    recorded = json.loads(open(run.config_path).read())
    recorded.pop("conv_block")  # an older run's record: the loader fills in its net
    with open(run.config_path, "w") as f:
        json.dump(recorded, f)
    opened, real_open = [], builtins.open

    def counting_open(file, *args, **kwargs):
        if os.fspath(file) == run.config_path:
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    config = run.load_config()
    assert len(opened) == 1
    assert config.epochs == 3 and config.conv_block == "strided"


def test_load_run_names_a_bad_config_once(tmp_path):
    from gluon_triplet import load_run

    run = make_run(str(tmp_path / "r"), **{"model-best.params": "p"})
    with open(run.config_path, "w") as f:
        f.write("{")
    with pytest.raises(ConfigError) as e:
        load_run(run.path)
    assert str(e.value).count(run.config_path) == 1


def test_check_resumable(tmp_path):
    config = Config(epochs=3)
    assert make_run(str(tmp_path / "fresh")).check_resumable(config) is None
    done = make_run(str(tmp_path / "done"), **{"metrics.json": '{"finished": true}'})
    with pytest.raises(ConfigError, match="already finished its 3 epochs"):
        done.check_resumable(config)
    outputs = make_run(str(tmp_path / "out"), **{"model-last.params": "p"})
    with pytest.raises(ConfigError, match="no checkpoint to resume from .* model-last.params"):
        outputs.check_resumable(config)
    with pytest.raises(ConfigError, match="does not support distributed runs"):
        make_run(str(tmp_path / "dist")).check_resumable(Config(kvstore="dist_sync"))


def test_lock_excludes_a_second_open_file_and_is_released(tmp_path):
    run = make_run(str(tmp_path / "r"))
    run.check_free()  # never locked: nothing to check, nothing written
    assert not os.path.exists(run.lock_path)
    with run.lock():
        with open(run.lock_path) as f:
            assert f.read() == f"{os.getpid()} {socket.gethostname()}\n"
        expected = f"{run.path} is in use by process {os.getpid()} on {socket.gethostname()}"
        # Another open file description of the same lock file: flock excludes it too.
        with pytest.raises(RunDirInUse) as e, RunDir(run.path).lock():
            pass
        assert str(e.value) == expected
        with pytest.raises(RunDirInUse, match=expected):
            RunDir(run.path).check_free()
    RunDir(run.path).check_free()
    with RunDir(run.path).lock():  # released on exit from the block
        pass


def test_lock_held_by_another_process_names_its_pid(tmp_path):
    run = make_run(str(tmp_path / "r"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, run.lock_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunDirInUse, match=f"is in use by process {holder.pid}$"):
            run.check_free()
        with pytest.raises(RunDirInUse, match=f"is in use by process {holder.pid}$"), run.lock():
            pass
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with run.lock():  # the holder exited: free again
        pass


def _tiny_image_run_flags(tmp_path):
    """Train flags for a one-epoch CNN run on 48 small 12 x 12 images of 3 classes."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 16)
    x = (rng.random((48, 12, 12)) + y[:, None, None]).astype(np.float32) / 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    flags = ["--dataset", f"npz:{tmp_path / 'd.npz'}", "--epochs", "1", "--embedding-size", "4"]
    flags += ["--logdir", str(tmp_path), "--no-plots", "--projector-samples", "0", "-K", "4"]
    return flags


def test_a_run_made_before_conv_block_existed_loads_its_strided_cnn(tmp_path, capsys):
    from gluon_triplet.cli import main

    flags = _tiny_image_run_flags(tmp_path)

    # A new run records the block "auto" chose, and says which in its log.
    assert main([*flags, "--run-name", "new"]) == 0
    assert (
        "model: cnn, pooled blocks, BatchNorm from convolution 3 (auto: 12 x 12 data)"
        in capsys.readouterr().err
    )
    assert RunDir(str(tmp_path / "new")).load_config().conv_block == "pooled"

    # An older run's config.json has no conv_block: its net was the strided CNN.
    assert main([*flags, "--run-name", "old", "--conv-block", "strided"]) == 0
    path = tmp_path / "old" / RunDir.CONFIG
    recorded = json.loads(path.read_text())
    assert recorded.pop("conv_block") == "strided"
    path.write_text(json.dumps(recorded))
    assert RunDir(str(tmp_path / "old")).load_config().conv_block == "strided"
    assert main(["evaluate", str(tmp_path / "old"), "-q"]) == 0


def test_a_run_made_before_automatic_batch_norm_loads_its_net_without_it(tmp_path, capsys):
    from gluon_triplet.cli import main

    flags = _tiny_image_run_flags(tmp_path)

    # A new run records the BatchNorm the automatic setting chose: the last of 3.
    assert main([*flags, "--run-name", "new"]) == 0
    recorded = json.loads((tmp_path / "new" / RunDir.CONFIG).read_text())
    assert (recorded["batch_norm"], recorded["batch_norm_from"]) == (True, 3)
    # Runs of the pooled CNN made before: batch_norm false (or, older, absent) and no
    # batch_norm_from; they load, evaluate and export the net they trained.
    for name, drop in (("false", ()), ("absent", ("batch_norm",))):
        assert main([*flags, "--run-name", name, "--no-batch-norm"]) == 0
        path = tmp_path / name / RunDir.CONFIG
        recorded = json.loads(path.read_text())
        assert recorded.pop("batch_norm_from") == 1 and recorded["batch_norm"] is False
        for key in drop:
            recorded.pop(key)
        path.write_text(json.dumps(recorded))
        assert RunDir(str(tmp_path / name)).load_config().batch_norm is False
        assert main(["evaluate", str(tmp_path / name), "-q"]) == 0
    # Had the loader read the absent key as automatic, the net would have BatchNorm
    # parameters the file lacks, and evaluate would fail (checked: it does without the fix).


def test_a_pool_first_run_records_it_and_reloads_its_net(tmp_path, capsys):
    from gluon_triplet.cli import main

    flags = _tiny_image_run_flags(tmp_path)
    assert main([*flags, "--run-name", "pf", "--pool-first", "--batch-norm"]) == 0
    assert "BatchNorm from convolution 1, pooling first" in capsys.readouterr().err
    recorded = json.loads((tmp_path / "pf" / RunDir.CONFIG).read_text())
    assert recorded["pool_first"] is True and recorded["batch_norm"] is True
    assert main(["evaluate", str(tmp_path / "pf"), "-q"]) == 0
    # The record rebuilds the net it trained: pooling right after each convolution (the
    # parameters alone would also fit the usual order, so the record is what decides).
    from gluon_triplet.nets.model import model_from_config

    config = RunDir(str(tmp_path / "pf")).load_config()
    net, _ = model_from_config(config, None)
    kinds = [type(b).__name__ for b in net.body]
    assert kinds[:4] == ["Conv2D", "MaxPool2D", "BatchNorm", "Activation"]
