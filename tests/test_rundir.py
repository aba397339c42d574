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
    assert str(e.value) == (
        f"{run.config_path}: config key 'epochs' must be an integer or null, got '3'"
    )


def test_load_config_reads_the_file_once(tmp_path, monkeypatch):
    import builtins

    run = make_run(str(tmp_path / "r"))
    # An earlier version's record of a CNN run: the loader turns its settings into the
    # architecture they built.
    recorded = json.loads(open(run.config_path).read())
    recorded.pop("architecture")
    recorded.update(model="cnn", input_shape=[28, 28], conv_block="strided", channels=None)
    recorded.update(batch_norm=False, batch_norm_from=1, pool_first=False)
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
    assert config.epochs == 3 and config.architecture == {
        "block": "strided",
        "channels": (32, 64),
        "pool": "flatten",
        "batch_norm": False,
        "batch_norm_from": 1,
    }


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


def _train(tmp_path, name, *flags, architecture=None):
    """A one-epoch run named ``name``; ``architecture``: its CNN, given as a JSON config
    gives it (the CNN options have no flags)."""
    from gluon_triplet.cli import main

    argv = [*_tiny_image_run_flags(tmp_path), "--run-name", name, *flags]
    if architecture is not None:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"model": "cnn", "architecture": architecture}))
        argv += ["--config", str(path)]
    assert main(argv) == 0
    return RunDir(str(tmp_path / name))


def _as_written_before(run, **settings):
    """Rewrite ``run``'s config.json as the version before architectures wrote it: model
    "cnn", the CNN as its settings (conv_block, channels, batch_norm, ...), no
    architecture; ``None`` leaves a setting out (a run from before it existed)."""
    recorded = json.loads(open(run.config_path).read())
    assert recorded.pop("architecture") is not None and recorded["input_shape"]
    recorded["model"] = "cnn"
    recorded.update({key: value for key, value in settings.items() if value is not None})
    with open(run.config_path, "w") as f:
        json.dump(recorded, f)


def _parameters(net):
    """Structural parameter names (as in a .params file) and their shapes."""
    return {name: p.shape for name, p in net._collect_params_with_prefix().items()}


def _rebuilds_its_net(run, trained):
    """The recorded config rebuilds a net with the parameters ``trained`` had, and the
    run's parameter file loads into it: every parameter, nothing left over."""
    from mxnet import nd

    from gluon_triplet.nets.zoo import model_from_config

    net, _ = model_from_config(run.load_config(), None)
    net.load_parameters(run.params_path("best"))  # strict: no missing or extra names
    saved = {name: array.shape for name, array in nd.load(run.params_path("best")).items()}
    assert _parameters(net) == trained == saved
    return net


def _trained_parameters(run):
    from gluon_triplet.nets.zoo import model_from_config

    net, _ = model_from_config(run.load_config(), None)
    net.load_parameters(run.params_path("best"))
    return _parameters(net)


def test_a_run_records_its_architecture_and_rebuilds_its_net(tmp_path, capsys):
    # A new run resolves auto once, says what it built in its log and records it.
    run = _train(tmp_path, "new")
    assert (
        "model: cnn, pooled blocks 16 32 128, BatchNorm from convolution 3 (auto: 12 x 12 data)"
        in capsys.readouterr().err
    )
    recorded = json.loads(open(run.config_path).read())
    assert (recorded["model"], recorded["input_shape"]) == ("cnn", [12, 12])
    assert recorded["architecture"] == {
        "block": "pooled",
        "channels": [16, 32, 128],
        "pool": "flatten",
        "batch_norm": True,
        "batch_norm_from": 3,
    }
    assert not {"conv_block", "channels", "batch_norm", "pool_first"} & set(recorded)
    net = _rebuilds_its_net(run, _trained_parameters(run))
    kinds = [type(b).__name__ for b in net.body]
    assert kinds.count("BatchNorm") == 1 and kinds.count("MaxPool2D") == 3
    # The record, not today's rule, decides: another architecture recorded by hand is
    # what the run dir rebuilds (and then its parameters no longer fit).
    recorded["architecture"]["channels"] = [16, 32, 64]
    with open(run.config_path, "w") as f:
        json.dump(recorded, f)
    from gluon_triplet.nets.zoo import model_from_config

    other, _ = model_from_config(run.load_config(), None)
    assert _parameters(other)["body.4.weight"][0] == 64  # the 3rd convolution's width


@pytest.mark.parametrize(
    "flags, architecture, old_settings, built",
    [
        # The reference strided CNN (conv_block strided, 32 64, no BatchNorm).
        (
            ["--model", "convnet"],
            None,
            {"conv_block": "strided", "channels": None, "batch_norm": False},
            {"block": "strided", "channels": (32, 64), "batch_norm": False},
        ),
        # The pooled default 16 32 128 with BatchNorm from the 3rd convolution, as the
        # previous version recorded what its automatic settings chose.
        (
            [],
            None,
            {"conv_block": "pooled", "channels": None, "batch_norm": True, "batch_norm_from": 3},
            {
                "block": "pooled",
                "channels": (16, 32, 128),
                "batch_norm": True,
                "batch_norm_from": 3,
            },
        ),
        # Widths given with --channels, BatchNorm on every convolution, pooling first.
        (
            [],
            {"block": "pooled", "channels": [8, 16], "batch_norm": True, "pool_first": True},
            {"conv_block": "pooled", "channels": [8, 16], "batch_norm": True, "pool_first": True},
            {"block": "pooled", "channels": (8, 16), "batch_norm": True, "pool_first": True},
        ),
    ],
    ids=["strided", "pooled-bn3", "pool-first"],
)
def test_a_run_dir_of_the_previous_version_loads_its_net(
    tmp_path, flags, architecture, old_settings, built
):
    from gluon_triplet.cli import main

    run = _train(tmp_path, "r", *flags, architecture=architecture)
    trained = _trained_parameters(run)
    old = {"batch_norm_from": 1, "pool_first": False, **old_settings}
    _as_written_before(run, **old)
    config = run.load_config()
    assert config.model == "cnn" and config.input_shape == (12, 12)
    assert {k: config.architecture.get(k, False) for k in built} == built
    _rebuilds_its_net(run, trained)
    assert main(["evaluate", run.path, "-q"]) == 0


def test_a_run_made_before_conv_block_existed_loads_its_strided_cnn(tmp_path):
    from gluon_triplet.cli import main

    # An older run's config.json has no conv_block (nor batch_norm): its net was the
    # strided CNN.
    run = _train(tmp_path, "old", "--model", "convnet")
    trained = _trained_parameters(run)
    _as_written_before(run, channels=None)
    assert "conv_block" not in json.loads(open(run.config_path).read())
    assert run.load_config().architecture["block"] == "strided"
    _rebuilds_its_net(run, trained)
    assert main(["evaluate", run.path, "-q"]) == 0
    # Older still: no input_shape either (runs from before pictures over 32 px).
    recorded = json.loads(open(run.config_path).read())
    recorded.pop("input_shape")
    with open(run.config_path, "w") as f:
        json.dump(recorded, f)
    assert run.load_config().input_shape is None
    _rebuilds_its_net(run, trained)


def test_a_run_made_before_automatic_batch_norm_loads_its_net_without_it(tmp_path):
    from gluon_triplet.cli import main

    # Runs of the pooled CNN made before: batch_norm false (or, older, absent) and no
    # batch_norm_from; they load, evaluate and export the net they trained.
    plain = {"block": "pooled", "channels": [16, 32, 128], "batch_norm": False}
    for name, batch_norm in (("false", False), ("absent", None)):
        run = _train(tmp_path, name, architecture=plain)
        trained = _trained_parameters(run)
        _as_written_before(run, conv_block="pooled", channels=None, batch_norm=batch_norm)
        assert "batch_norm_from" not in json.loads(open(run.config_path).read())
        assert run.load_config().architecture["batch_norm"] is False
        _rebuilds_its_net(run, trained)
        assert main(["evaluate", run.path, "-q"]) == 0
    # Had the loader read the absent key as automatic, the net would have BatchNorm
    # parameters the file lacks, and loading them would fail.


def test_a_pool_first_run_records_it_and_reloads_its_net(tmp_path, capsys):
    from gluon_triplet.cli import main

    arch = {"block": "pooled", "channels": [16, 32, 128], "batch_norm": True, "pool_first": True}
    run = _train(tmp_path, "pf", architecture=arch)
    assert (
        "model: cnn, pooled blocks 16 32 128, BatchNorm from convolution 1, pooling first "
        "(12 x 12 data)" in capsys.readouterr().err
    )
    recorded = json.loads(open(run.config_path).read())
    assert recorded["architecture"] == arch
    assert main(["evaluate", run.path, "-q"]) == 0
    # The record rebuilds the net it trained: pooling right after each convolution (the
    # parameters alone would also fit the usual order, so the record is what decides).
    net = _rebuilds_its_net(run, _trained_parameters(run))
    kinds = [type(b).__name__ for b in net.body]
    assert kinds[:4] == ["Conv2D", "MaxPool2D", "BatchNorm", "Activation"]
