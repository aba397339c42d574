"""load_run / embed / evaluate: a run directory rebuilds the very net that was trained."""

import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluon_triplet import (
    CheckpointCallback,
    Config,
    TripletDataset,
    TripletTrainer,
    build_model,
    create_pairs,
    embed,
    evaluate,
    evaluate_embeddings,
    load_dataset,
    load_run,
    per_class_precision_at_1,
)
from gluon_triplet.config import ConfigError
from gluon_triplet.training.callbacks import Callback


class _KeepEmbeddings(Callback):
    """Test-set embeddings after every epoch, to compare with the saved checkpoints."""

    def __init__(self, x):
        self.x = x
        self.by_epoch = {}

    def on_epoch_end(self, trainer):
        self.by_epoch[trainer.history[-1]["epoch"]] = trainer.embed(self.x)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("api") / "run")
    os.makedirs(run_dir)
    data = load_dataset("mnist-5k")
    x_tr, y_tr = data.x_train[::4], data.y_train[::4]
    x_te, y_te = data.x_test[::2], data.y_test[::2]
    # Every architecture and recipe setting spelled out: the defaults may change.
    config = Config(
        dataset="mnist-5k",
        model="mlp",
        hidden=(32,),
        embedding_size=16,
        output="relu",
        normalize=False,
        margin=1.0,
        miner="offline",
        optimizer="sgd",
        lr=0.5,
        lr_schedule="constant",
        epochs=3,
        batch_size=256,
    )
    config.save(os.path.join(run_dir, "config.json"))
    ctx = [mx.cpu()]
    net = build_model("mlp", ctx=ctx, hidden=(32,), embedding_size=16)
    keep = _KeepEmbeddings(x_te)
    # "Best" by the highest training loss: an early epoch, so best and last differ.
    checkpoints = CheckpointCallback(run_dir, monitor="train/loss")
    trainer = TripletTrainer(
        net,
        TripletDataset(x_tr, y_tr, seed=0),
        config,
        ctx,
        test_x=x_te,
        test_y=y_te,
        test_triplets=create_pairs(y_te, seed=config.seed, warn=False),
        callbacks=[checkpoints, keep],
    )
    history = trainer.fit()
    assert checkpoints.best_epoch < config.epochs
    return {
        "run_dir": run_dir,
        "config": config,
        "x": x_te,
        "y": y_te,
        "last": embed(net, x_te),
        "best": keep.by_epoch[checkpoints.best_epoch],
        "history": history,
    }


@pytest.mark.parametrize("which", ["last", "best"])
def test_load_run_round_trip(trained, which):
    net, config = load_run(trained["run_dir"], params=which)
    assert config == trained["config"]
    np.testing.assert_array_equal(embed(net, trained["x"]), trained[which])


def test_load_run_reproduces_the_final_metrics(trained):
    net, config = load_run(trained["run_dir"], params="last")
    got = evaluate(embed(net, trained["x"]), trained["y"], margin=config.margin, seed=config.seed)
    final = dict(trained["history"][-1]["test"])
    final.pop("per_class_precision_at_1")
    end_only = {k: final.pop(k) for k in ("nmi", "ami")}
    assert got == pytest.approx(final, rel=1e-9)
    both = evaluate(
        embed(net, trained["x"]), trained["y"], seed=config.seed, triplets=None, clustering=True
    )
    assert {k: both[k] for k in end_only} == pytest.approx(end_only, rel=1e-9)


def test_load_run_errors(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_run(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no parameter file 'x.params' \(have: model-"):
        load_run(trained["run_dir"], params="x.params")
    # The same params under a config describing another net: refused, naming the file.
    other = tmp_path / "other"
    other.mkdir()
    cfg = json.loads(open(os.path.join(trained["run_dir"], "config.json")).read())
    cfg["embedding_size"] = 8
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="cannot load .*model-last.params into the model"):
        load_run(str(other), params=os.path.join(trained["run_dir"], "model-last.params"))
    cfg["embedding_size"] = "big"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="embedding_size"):
        load_run(str(other))


def _brute_precision_at_1(emb, y):
    hits = 0
    for i in range(len(emb)):
        dists = [((emb[i] - emb[j]) ** 2).sum() if j != i else np.inf for j in range(len(emb))]
        hits += y[int(np.argmin(dists))] == y[i]
    return hits / len(emb)


def test_evaluate_against_metrics_and_brute_force():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 60)
    emb = rng.standard_normal((60, 3)) + 2.0 * y[:, None]
    got = evaluate(emb, y, margin=0.5, seed=7, per_class=True)
    triplets = create_pairs(y, seed=7, warn=False)
    expected = evaluate_embeddings(emb, y, triplets=triplets, margin=0.5)
    expected["per_class_precision_at_1"] = per_class_precision_at_1(emb, y)
    assert got == expected
    a, p, n = triplets
    strict = np.mean([((emb[i] - emb[j]) ** 2).sum() < ((emb[i] - emb[k]) ** 2).sum()
                      for i, j, k in zip(a, p, n)])  # fmt: skip
    assert got["triplet_accuracy"] == pytest.approx(strict)
    assert got["precision_at_1"] == pytest.approx(_brute_precision_at_1(emb, y))
    # explicit triples are used as given; None: retrieval metrics only
    assert evaluate(emb, y, margin=0.5, triplets=triplets) == evaluate(emb, y, margin=0.5, seed=7)
    only = evaluate(emb, y, triplets=None)
    assert "triplet_accuracy" not in only
    assert only["precision_at_1"] == got["precision_at_1"]
    with pytest.raises(ValueError, match="triplets must be"):
        evaluate(emb, y, triplets="random")


def test_load_run_rebuilds_a_cnn_from_auto(tmp_path):
    """``"model": "auto"`` in config.json: the parameters say it was the CNN."""
    cfg = {"model": "auto", "hidden": None, "embedding_size": 8}
    cfg.update(output="linear", normalize=True, dataset="mnist-5k")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    net = build_model("cnn", ctx=[mx.cpu()], embedding_size=8, output="linear", normalize=True)
    x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    want = embed(net, x)  # also completes the deferred initialisation
    net.save_parameters(str(tmp_path / "model-best.params"))
    loaded, config = load_run(str(tmp_path))
    assert config.model == "auto" and type(loaded).__name__ == "EmbeddingCNN"
    np.testing.assert_array_equal(embed(loaded, x), want)


def test_load_run_rebuilds_the_cnn_an_auto_config_of_the_previous_version_built(tmp_path):
    """``"model": "auto"`` with the previous version's CNN settings and a sample shape:
    the net those settings built (here the pooled CNN, BatchNorm on its 3rd convolution)."""
    cfg = {"model": "auto", "embedding_size": 8, "input_shape": [28, 28]}
    cfg.update(conv_block="pooled", channels=None, batch_norm=True, batch_norm_from=3)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    arch = {"block": "pooled", "channels": (16, 32, 128), "batch_norm": True, "batch_norm_from": 3}
    net = build_model("cnn", embedding_size=8, output="linear", normalize=True, **arch)
    x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    want = embed(net, x)
    net.save_parameters(str(tmp_path / "model-best.params"))
    loaded, config = load_run(str(tmp_path))
    assert config.model == "auto" and config.architecture is None
    np.testing.assert_array_equal(embed(loaded, x), want)
