import json

import pytest

from gluon_triplet.config import PRESETS, Config, ConfigError


def test_reference_preset_is_the_reference_recipe():
    c = Config(**PRESETS["reference"])
    assert (c.optimizer, c.lr, c.batch_size, c.margin, c.epochs) == ("sgd", 0.05, 1024, 1.0, 10)
    assert (c.model, c.hidden, c.output, c.normalize) == ("mlp", (256,), "relu", False)
    assert (c.miner, c.lr_schedule, c.embedding_size) == ("offline", "constant", 128)


def test_defaults_are_the_measured_recipe():
    c = Config()
    assert (c.miner, c.optimizer, c.lr, c.margin, c.lr_schedule) == (
        "semi-hard",
        "adam",
        0.001,
        0.2,
        "cosine",
    )
    assert (c.model, c.hidden, c.normalize, c.output) == ("auto", None, True, "linear")
    assert c.dataset == "mnist" and c.pk_classes is None and c.pk_samples == 16
    # The pooled CNN up to 32 px (chosen on validation splits, docs/defaults.md).
    assert (c.conv_block, c.augment, c.batch_norm) == ("auto", "none", None)


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
        ({"epochs": "3"}, "'epochs' must be of type int"),
        ({"lr": True}, "'lr' must be of type float"),
        ({"hidden": [1.5]}, "'hidden' must be a list of integers"),
        ({"lr": 0}, "lr must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"optimizer": "rmsprop"}, "optimizer must be"),
        ({"run_name": "../x"}, "run_name must be a plain folder name"),
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
