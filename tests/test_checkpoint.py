"""Resumable checkpoints: a restored trainer continues exactly as the original would have;
writes are atomic; corrupt or foreign checkpoints are refused with one clear line."""

import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluon_triplet.config import Config
from gluon_triplet.data.triplets import TripletDataset, create_pairs
from gluon_triplet.nets.zoo import build_model
from gluon_triplet.runs import checkpoint
from gluon_triplet.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from gluon_triplet.training.callbacks import Callback
from gluon_triplet.training.trainer import TripletTrainer, set_seed


def tiny_data(seed=0, n_per_class=12, classes=4, dim=10):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    x = centers[y] + 0.5 * rng.normal(size=(len(y), dim)).astype(np.float32)
    return x, y


def make_trainer(contexts=None, callbacks=(), **overrides):
    contexts = contexts or [mx.cpu()]
    settings = {
        "model": "mlp",
        "hidden": (16,),
        "embedding_size": 8,
        "epochs": 3,
        "batch_size": 8,
        "miner": "offline",
        "optimizer": "adam",
        "lr": 0.01,
        "lr_schedule": "cosine",
        "seed": 3,
    }
    settings.update(overrides)
    if settings["miner"] != "offline":
        settings.setdefault("pk_classes", 2)
        settings.setdefault("pk_samples", 4)
    config = Config(**settings)
    x, y = tiny_data()
    set_seed(config.seed)
    net = build_model("mlp", ctx=list(contexts), hidden=(16,), embedding_size=8, output="linear")
    train_set = TripletDataset(x, y, seed=config.seed)
    return TripletTrainer(
        net,
        train_set,
        config,
        list(contexts),
        test_x=x,
        test_y=y,
        test_triplets=create_pairs(y, seed=0, warn=False),
        callbacks=callbacks,
    )


def params_of(trainer):
    return {
        name: p.data(trainer.contexts[0]).asnumpy()
        for name, p in zip(
            # structural names: the prefixes differ between two nets built in one process
            trainer.net._collect_params_with_prefix().keys(),
            trainer.net._collect_params_with_prefix().values(),
        )
    }


class SaveAfter(Callback):
    """Checkpoints like CheckpointCallback, into ``directory``, after every epoch."""

    def __init__(self, directory):
        self.directory = directory

    def on_epoch_end(self, trainer):
        save_checkpoint(trainer, self.directory)


def history_without_times(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer": "adam"},  # state: a (mean, var) tuple per parameter
        {"optimizer": "sgd", "momentum": 0.9, "lr_schedule": "constant"},  # one NDArray
        {"optimizer": "sgd", "momentum": 0.0},  # no state at all
        {"miner": "batch-all"},  # P x K sampler, and MXNet's RNG in the miner
        # The kvstore's updater; each context mines its half: 2 classes x 4 samples.
        {"miner": "semi-hard", "pk_classes": 4, "contexts": (mx.cpu(0), mx.cpu(1))},
    ],
    ids=["adam", "sgd-momentum", "sgd", "batch-all", "two-contexts"],
)
def test_resumed_trainer_equals_uninterrupted(tmp_path, overrides):
    """Train 3 epochs straight; separately, train 1, checkpoint, build a fresh trainer,
    restore, train the other 2: same parameters and the same history, exactly."""
    overrides = dict(overrides)
    contexts = overrides.pop("contexts", None)
    straight = make_trainer(contexts, **overrides)
    straight.fit()

    first = make_trainer(contexts, callbacks=[SaveAfter(str(tmp_path))], epochs=3, **overrides)
    first.stop_training = True  # stops after epoch 1, like an interrupt would
    first.fit()
    manifest = read_manifest(str(tmp_path))
    assert manifest["epoch"] == 1

    resumed = make_trainer(contexts, **overrides)
    assert load_checkpoint(resumed, str(tmp_path)) == 1
    np.testing.assert_array_equal(
        np.concatenate([v.ravel() for v in params_of(resumed).values()]),
        np.concatenate([v.ravel() for v in params_of(first).values()]),
    )
    resumed.fit()
    assert all(r["train"]["active_fraction"] > 0 for r in resumed.history[1:])  # it learns
    assert resumed.epoch == 3 and [r["epoch"] for r in resumed.history] == [0, 1, 2, 3]
    for (name, want), got in zip(params_of(straight).items(), params_of(resumed).values()):
        np.testing.assert_array_equal(got, want, err_msg=name)
    got, want = history_without_times(resumed.history), history_without_times(straight.history)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


@pytest.mark.parametrize("miner", ["offline", "semi-hard"])
def test_resumed_weight_average_equals_uninterrupted(tmp_path, miner):
    """With --ema-decay the checkpoint's model file is the average (the run's net) and
    training-e*.params the training weights; a resumed run ends with the same average,
    training weights and history as one that was not interrupted."""
    straight = make_trainer(miner=miner, ema_decay=0.9)
    straight.fit()
    first = make_trainer(callbacks=[SaveAfter(str(tmp_path))], miner=miner, ema_decay=0.9)
    first.stop_training = True
    first.fit()
    manifest = read_manifest(str(tmp_path))
    assert manifest["training"] == "training-e0001.params"
    assert manifest["trainer"]["average_updates"] == first.average.updates > 0
    averaged = params_of(first)  # fit() leaves the average in the net

    resumed = make_trainer(miner=miner, ema_decay=0.9)
    load_checkpoint(resumed, str(tmp_path))
    for got, want in zip(params_of(resumed).values(), first.average.training_arrays()):
        np.testing.assert_array_equal(got, want.asnumpy())
    resumed.average.swap_in()
    for (name, want), got in zip(averaged.items(), params_of(resumed).values()):
        np.testing.assert_array_equal(got, want, err_msg=name)
    resumed.average.swap_out()
    resumed.fit()
    assert resumed.average.updates == straight.average.updates
    for (name, want), got in zip(params_of(straight).items(), params_of(resumed).values()):
        np.testing.assert_array_equal(got, want, err_msg=name)
    straight.average.swap_out()
    resumed.average.swap_out()
    for (name, want), got in zip(params_of(straight).items(), params_of(resumed).values()):
        np.testing.assert_array_equal(got, want, err_msg=name)
    got, want = history_without_times(resumed.history), history_without_times(straight.history)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_weight_average_and_checkpoint_must_agree(tmp_path):
    without = make_trainer(callbacks=[SaveAfter(str(tmp_path))], epochs=1)
    without.fit()
    with pytest.raises(CheckpointError, match="saved without --ema-decay, resumed with it"):
        load_checkpoint(make_trainer(ema_decay=0.9), str(tmp_path))


def test_checkpoint_files_and_old_ones_removed(tmp_path):
    trainer = make_trainer(callbacks=[SaveAfter(str(tmp_path))], epochs=2)
    trainer.fit()
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint.json",
        "model-e0002.params",
        "optimizer-e0002.params",
    ]
    manifest = read_manifest(str(tmp_path))
    assert manifest["epoch"] == 2 and manifest["trainer"]["epoch"] == 2
    assert [r["epoch"] for r in manifest["trainer"]["history"]] == [0, 1, 2]
    # Never a pickle: both binary files are MXNet NDArray files nd.load reads.
    for name in ("model-e0002.params", "optimizer-e0002.params"):
        assert not (tmp_path / name).read_bytes().startswith(b"\x80")
        assert mx.nd.load(str(tmp_path / name))


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """A failure half-way through writing epoch 2 leaves epoch 1's checkpoint whole."""
    trainer = make_trainer(epochs=2)
    trainer.fit()
    trainer.epoch = 1
    save_checkpoint(trainer, str(tmp_path))
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}

    real_save = mx.nd.save

    def torn_save(path, arrays):
        real_save(path, arrays)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.mx.nd, "save", torn_save)
    trainer.epoch = 2
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(trainer, str(tmp_path))
    # The new parameter file may be complete, but nothing names it: epoch 1 still rules.
    assert read_manifest(str(tmp_path))["epoch"] == 1
    for name, content in before.items():
        assert (tmp_path / name).read_bytes() == content
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    resumed = make_trainer(epochs=2)
    assert load_checkpoint(resumed, str(tmp_path)) == 1


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model-e0001.params").write_bytes(b"\x12" * 10), "checksum"),
        (lambda d: (d / "optimizer-e0001.params").unlink(), "which is missing"),
        (lambda d: (d / "checkpoint.json").write_text('{"epoch": 1'), "unreadable checkpoint"),
        (lambda d: (d / "checkpoint.json").write_text("[]"), "not a checkpoint manifest"),
    ],
    ids=["truncated-params", "missing-optimizer", "torn-manifest", "foreign-json"],
)
def test_damaged_checkpoint_is_refused(tmp_path, damage, message):
    trainer = make_trainer(epochs=1)
    trainer.fit()
    save_checkpoint(trainer, str(tmp_path))
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(make_trainer(epochs=1), str(tmp_path))
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    trainer = make_trainer(epochs=1)
    trainer.fit()
    save_checkpoint(trainer, str(tmp_path))
    other = make_trainer(epochs=1)
    other.net = build_model("mlp", hidden=(32,), embedding_size=8, output="linear")
    with pytest.raises(CheckpointError, match="does not fit the model .*shape incompatible"):
        load_checkpoint(other, str(tmp_path))


def test_optimizer_mismatch_is_refused(tmp_path):
    trainer = make_trainer(epochs=1, optimizer="adam")
    trainer.fit()
    save_checkpoint(trainer, str(tmp_path))
    with pytest.raises(CheckpointError, match="saved by optimizer Adam, but the config uses SGD"):
        load_checkpoint(make_trainer(epochs=1, optimizer="sgd"), str(tmp_path))


def test_non_finite_parameters_are_never_checkpointed(tmp_path):
    trainer = make_trainer(epochs=1)
    trainer.fit()
    save_checkpoint(trainer, str(tmp_path))
    before = sorted(os.listdir(tmp_path))
    first = next(iter(trainer.net.collect_params().values()))
    first.set_data(first.data() * np.nan)
    trainer.epoch = 2
    with pytest.raises(FloatingPointError, match="became NaN or infinite in epoch 2"):
        save_checkpoint(trainer, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == before
    assert read_manifest(str(tmp_path))["epoch"] == 1


def test_best_epoch_kept_and_model_files_restored(tmp_path):
    """The checkpoint keeps the best epoch's parameters; restore_outputs rewrites model
    files that differ from the checkpoint's (and only those)."""
    from gluon_triplet.runs.checkpoint import restore_outputs

    ckpt, run = tmp_path / "checkpoint", tmp_path
    trainer = make_trainer(epochs=2)
    trainer.net(mx.nd.array(tiny_data()[0]))  # initialise the deferred parameters
    trainer.epoch = 1
    save_checkpoint(trainer, str(ckpt), best_epoch=1)
    first = (ckpt / "model-e0001.params").read_bytes()
    param = next(iter(trainer.net.collect_params().values()))
    param.set_data(param.data() * 0.5)  # epoch 2's parameters differ
    trainer.epoch = 2
    save_checkpoint(trainer, str(ckpt), best_epoch=1)
    assert sorted(os.listdir(ckpt)) == [
        "checkpoint.json",
        "model-e0001.params",
        "model-e0002.params",
        "optimizer-e0002.params",
    ]
    manifest = read_manifest(str(ckpt))
    assert manifest["best"] == {"epoch": 1, "params": "model-e0001.params"}
    (run / "model-last.params").write_bytes(first)  # stale: epoch 1's
    assert restore_outputs(str(ckpt), str(run)) == [
        str(run / "model-last.params"),
        str(run / "model-best.params"),
    ]
    assert (run / "model-last.params").read_bytes() == (ckpt / "model-e0002.params").read_bytes()
    assert (run / "model-best.params").read_bytes() == first
    assert restore_outputs(str(ckpt), str(run)) == []  # already right
