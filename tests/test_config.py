import itertools
import json

import pytest

from gluon_triplet.config import PRESETS, Config, ConfigError


def test_reference_preset_is_the_reference_recipe():
    c = Config(**PRESETS["reference"])
    assert (c.optimizer, c.lr, c.batch_size, c.margin, c.epochs) == ("sgd", 0.05, 1024, 1.0, 10)
    assert c.warmup_epochs == 0  # not the short-run warm-up, whatever --epochs says
    assert (c.model, c.hidden, c.output, c.normalize) == ("mlp", (256,), "relu", False)
    assert (c.miner, c.lr_schedule, c.embedding_size) == ("offline", "constant", 128)


def test_defaults_are_the_measured_recipe():
    c = Config()
    assert (c.miner, c.optimizer, c.lr, c.margin, c.lr_schedule) == (
        "semi-hard",
        "adam",
        None,  # automatic: resolve_schedule, for the run's epochs
        0.2,
        "cosine",
    )
    assert (c.model, c.hidden, c.normalize, c.output) == ("auto", None, True, "linear")
    assert c.dataset == "mnist" and c.pk_classes is None and c.pk_samples == 16
    # No architecture until a run resolves "auto" (the pooled CNN up to 32 px, chosen on
    # validation splits, docs/defaults.md) for its data and records it.
    assert (c.architecture, c.input_shape, c.augment) == (None, None, "none")


def test_null_hidden_and_pk_classes_round_trip(tmp_path):
    c = Config(hidden=None, pk_classes=None)
    c.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == c
    with pytest.raises(ConfigError, match="pk_classes must be >= 2"):
        Config(pk_classes=1)


def test_json_round_trip(tmp_path):
    c = Config(epochs=3, hidden=(64, 32), run_name="r1")
    c.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == c
    assert json.loads((tmp_path / "config.json").read_text())["hidden"] == [64, 32]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, "unknown config key\\(s\\): epoch"),
        ({"epochs": "3"}, "'epochs' must be an integer or null"),
        ({"lr": True}, "'lr' must be a number or null"),
        ({"hidden": [1.5]}, "'hidden' must be a list of integers"),
        ({"lr": 0}, "lr must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"optimizer": "rmsprop"}, "optimizer must be"),
        ({"run_name": "../x"}, "run_name must be a plain folder name"),
        ({"model": "cnn", "architecture": [16]}, "'architecture' must be an object or null"),
        ({"model": "cnn", "architecture": {"channels": [8], "depth": 2}}, "unknown architecture"),
        ({"model": "cnn", "architecture": {"block": "pooled"}}, "channels must be one or more"),
        ({"model": "cnn", "architecture": {"channels": [8], "pool": "max"}}, "pool must be"),
        ({"model": "cnn", "architecture": {"channels": [8], "batch_norm": 1}}, "true or false"),
        ({"model": "auto", "architecture": {"channels": [8]}}, "model is 'auto'"),
        ({"eval_every": -1}, "eval_every must be >= 0"),
        ({"eval_samples": 1}, "eval_samples must be 0 \\(the whole split\\) or >= 2"),
        ({"eval_samples": -1}, "eval_samples must be 0"),
    ],
)
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(values)


def test_bad_json_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.load(p)
    p.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        Config.load(p)


def test_the_soft_margin_loss_refuses_a_cosine_miner():
    """Miner and loss share one distance; the soft-margin loss's is Euclidean."""
    with pytest.raises(ConfigError, match="soft_margin compares Euclidean distances"):
        Config(soft_margin=True, distance="cosine")
    assert Config(soft_margin=True, distance="euclidean").soft_margin


@pytest.mark.parametrize(
    "key", ["conv_block", "channels", "batch_norm", "batch_norm_from", "pool_first"]
)
def test_a_removed_setting_says_what_replaced_it(tmp_path, key):
    from gluon_triplet.config import REMOVED_KEYS

    assert set(REMOVED_KEYS) == {
        "conv_block",
        "channels",
        "batch_norm",
        "batch_norm_from",
        "pool_first",
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"epochs": 2, key: None}))
    with pytest.raises(ConfigError) as e:
        Config.load(p)
    assert str(e.value) == (
        f"{p}: config key {key!r} is no longer a setting: the CNN is chosen by --model (cnn "
        "or convnet) and sized for the pictures; a run records its exact layers as "
        "'architecture'"
    )


def test_an_architecture_round_trips_and_is_recorded_only(tmp_path):
    import dataclasses

    arch = {"block": "pooled", "channels": (8, 16), "pool": "flatten", "batch_norm": True}
    c = Config(model="cnn", architecture=arch, input_shape=(1, 12, 12))
    c.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architecture"] == {**arch, "channels": [8, 16]}
    assert saved["input_shape"] == [1, 12, 12]
    assert Config.load(tmp_path / "config.json") == c
    # Set by a run or a JSON config, never by a flag.
    recorded = {f.name for f in dataclasses.fields(Config) if f.metadata.get("recorded")}
    assert recorded == {"input_shape", "architecture"}


def test_epochs_left_automatic_grow_for_small_training_sets():
    from gluon_triplet.config import (
        AUTO_EPOCHS,
        AUTO_MIN_SAMPLES,
        MAX_AUTO_EPOCHS,
        resolve_epochs,
    )

    assert Config().epochs is None  # automatic
    for samples in [1, 50, 768, 999, 1000, 1001, 1198, 2979, 3000, 3001, 4000, 60_000]:
        # brute force: the fewest passes >= 10 that show 30,000 samples, at most 30
        passes = next(e for e in itertools.count(1) if e * samples >= AUTO_MIN_SAMPLES)
        want = min(MAX_AUTO_EPOCHS, max(AUTO_EPOCHS, passes))
        assert resolve_epochs(None, samples) == want, samples
        assert resolve_epochs(7, samples) == 7  # a chosen count is kept
    assert resolve_epochs(None, 60_000) == 10 and resolve_epochs(None, 768) == 30
    assert Config.from_dict({"epochs": None}).epochs is None
    with pytest.raises(ConfigError, match=r"warmup_epochs \(10\) must be < epochs \(10\)"):
        Config(warmup_epochs=10)  # automatic epochs are at least 10
