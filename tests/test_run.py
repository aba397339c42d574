"""Tests of gluon_triplet.runs.run's helpers (whole runs are in test_cli_train.py)."""

import numpy as np
import pytest
from mxnet import nd

from gluon_triplet.config import Config
from gluon_triplet.nets.model import model_from_config
from gluon_triplet.runs.run import _dense_widths


def _dense_parameters(net, sample_shape):
    """Brute force: build the net's deferred shapes with one sample, count Dense weights."""
    net(nd.zeros((1, *sample_shape)))
    return sum(
        int(np.prod(p.shape)) for name, p in net.collect_params().items() if "_dense" in name
    )


@pytest.mark.parametrize(
    "options, shape",
    [
        ({}, (28, 28)),  # auto: the pooled CNN
        ({"channels": (8, 16), "conv_block": "strided"}, (12, 12)),
        ({"channels": (8, 16, 24), "conv_block": "pooled"}, (3, 20, 20)),
        ({"channels": (4, 8), "pool_first": True, "batch_norm": True}, (13, 9)),
        ({"hidden": (32,), "conv_block": "strided"}, (28, 28)),
        # Past 32 pixels a side the net grows deeper and pools globally.
        ({}, (3, 64, 48)),
        ({"channels": (8, 16)}, (40, 40)),
        ({"model": "mlp", "hidden": (32, 16)}, (12, 12)),
    ],
)
def test_memory_estimate_counts_the_dense_layers_of_the_net_built(options, shape):
    config = Config(embedding_size=16, **options)
    features, widths = _dense_widths(config, shape)
    estimate = sum(a * b + b for a, b in zip([features, *widths[:-1]], widths))
    net, _ = model_from_config(config, shape)
    assert estimate == _dense_parameters(net, shape)
