"""Tests of gluon_triplet.runs.run's helpers (whole runs are in test_cli_train.py)."""

import numpy as np
import pytest
from mxnet import nd

from gluon_triplet.config import Config
from gluon_triplet.nets.zoo import model_from_config
from gluon_triplet.runs.run import _dense_widths, _resolve_model


def _dense_parameters(net, sample_shape):
    """Brute force: build the net's deferred shapes with one sample, count Dense weights."""
    net(nd.zeros((1, *sample_shape)))
    return sum(
        int(np.prod(p.shape)) for name, p in net.collect_params().items() if "_dense" in name
    )


def _arch(block, channels, **more):
    return {"model": "cnn", "architecture": {"block": block, "channels": channels, **more}}


@pytest.mark.parametrize(
    "options, shape",
    [
        ({}, (28, 28)),  # auto: the pooled CNN
        ({"model": "convnet"}, (28, 28)),
        (_arch("strided", (8, 16)), (12, 12)),
        (_arch("pooled", (8, 16, 24)), (3, 20, 20)),
        (_arch("pooled", (4, 8), pool_first=True, batch_norm=True), (13, 9)),
        ({"hidden": (32,), "model": "convnet"}, (28, 28)),
        # Past 32 pixels a side the nets grow deeper; the convnet pools globally.
        ({}, (3, 64, 48)),
        ({"model": "convnet"}, (3, 64, 48)),
        (_arch("strided", (8, 16), pool="avg"), (40, 40)),
        ({"model": "mlp", "hidden": (32, 16)}, (12, 12)),
    ],
)
def test_memory_estimate_counts_the_dense_layers_of_the_net_built(options, shape):
    # The estimate reads the architecture the run resolved and records.
    config = _resolve_model(Config(embedding_size=16, **options), shape)
    features, widths = _dense_widths(config, shape)
    estimate = sum(a * b + b for a, b in zip([features, *widths[:-1]], widths))
    net, _ = model_from_config(config, shape)
    assert estimate == _dense_parameters(net, shape)


def test_a_run_resolves_its_model_once_and_records_it(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        config = _resolve_model(Config(), (28, 28))
    assert (
        "model: cnn, pooled blocks 16 32 128, BatchNorm from convolution 3 (auto: 28 x 28 data)"
        in caplog.messages
    )
    assert (config.model, config.input_shape) == ("cnn", (28, 28))
    assert config.architecture == {
        "block": "pooled",
        "channels": (16, 32, 128),
        "pool": "flatten",
        "batch_norm": True,
        "batch_norm_from": 3,
    }
    # Resolving the record again (--resume) changes nothing; a recorded architecture is
    # kept whatever the name would give for the data.
    assert _resolve_model(config, (28, 28)) == config
    mine = {"block": "pooled", "channels": (4, 8), "pool": "avg", "pool_first": True}
    kept = _resolve_model(Config(model="cnn", architecture=mine), (3, 64, 64))
    assert kept.architecture == mine
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        convnet = _resolve_model(Config(model="convnet"), (3, 40, 40))
        mlp = _resolve_model(Config(), (784,))
    assert caplog.messages == [
        "model: convnet, strided blocks 32 64 128 (3 x 40 x 40 data)",
        "model: mlp (auto: 784 data)",
    ]
    assert convnet.architecture["pool"] == "avg"
    assert (mlp.model, mlp.architecture, mlp.input_shape) == ("mlp", None, (784,))


def test_a_run_resolves_automatic_epochs_for_its_training_set_and_records_them(tmp_path, capsys):
    """40 training samples: ceil(30,000 / 40) = 750 passes, capped at 30; the run logs
    and records the count, and trains that many epochs."""
    import json

    import numpy as np

    from gluon_triplet.cli import main

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    x = (rng.normal(size=(48, 6)) + y[:, None]).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    if True:
        status = main(
            [
                "--dataset",
                f"npz:{tmp_path / 'd.npz'}",
                "--logdir",
                str(tmp_path / "logs"),
                "--run-name",
                "r",
                "--model",
                "mlp",
                "--no-plots",
                "--projector-samples",
                "0",
                "-P",
                "4",
                "-K",
                "4",
                "--log-every",
                "1000",
            ]
        )
    assert status == 0
    # 40 training samples, of which 8 (2 of each class) validate: 32 train.
    assert "epochs: 30 (auto: 32 training samples;" in capsys.readouterr().err
    run = tmp_path / "logs" / "r"
    assert json.loads((run / "config.json").read_text())["epochs"] == 30
    assert json.loads((run / "metrics.json").read_text())["history"][-1]["epoch"] == 30
