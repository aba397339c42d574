"""The named architectures (--model) and the CNN each names for a picture size; no MXNet."""

import pytest

from gluon_triplet.config import Config
from gluon_triplet.nets.architectures import (
    ARCHITECTURES,
    BACKBONES,
    POOLED_CHANNELS,
    cnn_architecture,
    legacy_cnn_architecture,
    resolve_model_name,
)

# The default net of the Fashion-MNIST and MNIST figures: pooled 16 32 128, BatchNorm on
# the 3rd convolution only, flattened.
DEFAULT_28 = {
    "block": "pooled",
    "channels": (16, 32, 128),
    "pool": "flatten",
    "batch_norm": True,
    "batch_norm_from": 3,
}
REFERENCE_CONVNET = {
    "block": "strided",
    "channels": (32, 64),
    "pool": "flatten",
    "batch_norm": False,
}


def test_the_names_are_the_model_option_choices():
    assert list(ARCHITECTURES)[:4] == ["auto", "mlp", "cnn", "convnet"]
    assert set(ARCHITECTURES) == {"auto", "mlp", "cnn", "convnet", *BACKBONES}
    assert Config.__dataclass_fields__["model"].metadata["choices"] == tuple(ARCHITECTURES)
    with pytest.raises(ValueError, match="unknown model 'resnet19'; choose one of: auto, mlp"):
        resolve_model_name("resnet19", (28, 28))


def test_auto_is_the_cnn_for_pictures_and_the_mlp_otherwise():
    assert resolve_model_name("auto", (28, 28)) == resolve_model_name("auto", (3, 8, 9)) == "cnn"
    assert resolve_model_name("auto", (784,)) == resolve_model_name("auto", (28, 7)) == "mlp"
    assert resolve_model_name("convnet", (1, 28, 28)) == "convnet"
    assert resolve_model_name("mlp", (28, 28)) == "mlp"
    with pytest.raises(ValueError, match="model 'convnet' needs image samples"):
        resolve_model_name("convnet", (784,))
    with pytest.raises(ValueError, match="model 'auto' needs the shape of a sample"):
        resolve_model_name("auto", None)


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28), (3, 32, 32), (12, 12), (3, 20, 24)])
def test_pictures_up_to_32_px_keep_the_measured_nets(shape):
    assert cnn_architecture("cnn", shape) == DEFAULT_28
    assert DEFAULT_28["channels"] == POOLED_CHANNELS
    assert cnn_architecture("convnet", shape) == REFERENCE_CONVNET


def test_the_rule_above_32_px():
    # The nets a 64 px picture gets today (a change of the rule shows here).
    assert cnn_architecture("cnn", (3, 64, 64)) == {
        "block": "strided",
        "channels": (32, 64, 128),
        "pool": "avg",
        "batch_norm": True,
        "batch_norm_from": 1,
    }
    # The cnn above 32 px is the convnet's layers with BatchNorm on every convolution.
    for shape in [(33, 33), (3, 64, 48), (3, 100, 100), (1, 224, 224)]:
        convnet = cnn_architecture("convnet", shape)
        assert cnn_architecture("cnn", shape) == {
            **convnet,
            "batch_norm": True,
            "batch_norm_from": 1,
        }
    assert cnn_architecture("convnet", (3, 64, 64)) == {
        "block": "strided",
        "channels": (32, 64, 128),
        "pool": "avg",
        "batch_norm": False,
    }
    # The convnet: more strided convolutions until the map is at most 8 px, global pooling.
    assert cnn_architecture("convnet", (3, 224, 160))["channels"] == (32, 64, 128, 256, 256)
    with pytest.raises(ValueError, match="'mlp' is not a CNN architecture"):
        cnn_architecture("mlp", (28, 28))


@pytest.mark.parametrize(
    "recorded, shape, built",
    [
        # Before conv_block and batch_norm were recorded: the strided CNN, no BatchNorm.
        ({}, (28, 28), {**REFERENCE_CONVNET, "batch_norm_from": 1}),
        (
            {"channels": [8, 16]},
            (12, 12),
            {**REFERENCE_CONVNET, "channels": (8, 16), "batch_norm_from": 1},
        ),
        # The strided CNN above 32 px: deeper, globally pooled.
        (
            {"conv_block": "strided", "batch_norm": False, "batch_norm_from": 1},
            (3, 64, 48),
            {
                "block": "strided",
                "channels": (32, 64, 128),
                "pool": "avg",
                "batch_norm": False,
                "batch_norm_from": 1,
            },
        ),
        # The pooled default of its time, as a run recorded it.
        ({"conv_block": "pooled", "batch_norm": True, "batch_norm_from": 3}, (28, 28), DEFAULT_28),
        # batch_norm null: the automatic choice, the pooled CNN's last convolution.
        (
            {"conv_block": "pooled", "batch_norm": None, "channels": [4, 4, 4, 4]},
            (28, 28),
            {**DEFAULT_28, "channels": (4, 4, 4, 4), "batch_norm_from": 4},
        ),
        (
            {"conv_block": "strided", "batch_norm": None},
            (28, 28),
            {**REFERENCE_CONVNET, "batch_norm_from": 1},
        ),
        # --batch-norm alone: every convolution.
        (
            {"conv_block": "strided", "batch_norm": True},
            (28, 28),
            {**REFERENCE_CONVNET, "batch_norm": True, "batch_norm_from": 1},
        ),
        # A pooled run above 32 px had the strided widths, globally pooled.
        (
            {"conv_block": "pooled", "batch_norm": False},
            (3, 40, 40),
            {
                "block": "pooled",
                "channels": (32, 64, 128),
                "pool": "avg",
                "batch_norm": False,
                "batch_norm_from": 1,
            },
        ),
        (
            {"conv_block": "pooled", "batch_norm": True, "pool_first": True},
            (28, 28),
            {**DEFAULT_28, "batch_norm_from": 1, "pool_first": True},
        ),
    ],
)
def test_old_run_settings_give_the_net_they_built(recorded, shape, built):
    assert legacy_cnn_architecture(recorded, shape) == built
