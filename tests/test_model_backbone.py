"""Image models: the CNN on colour and any size, and Gluon model-zoo backbones."""

import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from gluon_triplet import Config, load_run
from gluon_triplet.nets.architectures import cnn_architecture, resolve_model_name
from gluon_triplet.nets.backbones import BackboneEmbedding
from gluon_triplet.nets.cnn import EmbeddingCNN
from gluon_triplet.nets.embed import embed
from gluon_triplet.nets.zoo import build_model, model_from_config


def n_params(net):
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values())


def test_small_images_keep_the_reference_cnn():
    # Up to 32 px the image work leaves the nets as they were: --model convnet is the
    # reference convnet exactly; the default (auto: cnn) is the pooled net chosen on
    # validation splits (tests/test_model_cnn.py).
    reference = {"block": "strided", "channels": (32, 64), "pool": "flatten", "batch_norm": False}
    assert cnn_architecture("convnet", (28, 28)) == reference
    assert cnn_architecture("convnet", (3, 32, 32)) == reference
    net, name = model_from_config(Config(model="convnet"), (28, 28))
    ref = build_model("cnn", embedding_size=128, output="linear", normalize=True)
    embed(net, np.zeros((1, 28, 28), np.float32))
    embed(ref, np.zeros((1, 28, 28), np.float32))
    assert name == "convnet" and n_params(net) == n_params(ref)
    assert [p.shape for p in net.collect_params().values()] == [
        p.shape for p in ref.collect_params().values()
    ]


@pytest.mark.parametrize("model", ["cnn", "convnet"])
@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 50, 90), (1, 224, 224), (96, 96)])
def test_large_images_get_a_net_sized_for_them(shape, model):
    arch = cnn_architecture(model, shape)
    net, name = model_from_config(Config(model=model, embedding_size=16), shape)
    out = embed(net, np.random.default_rng(0).random((2, *shape), dtype=np.float32))
    assert name == model and out.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    # The embedding layer is fed what the architecture says: one input per channel when
    # it pools globally (the convnet: its width does not grow with the picture), else the
    # last map, halved by each convolution.
    dense = [p for k, p in net.collect_params().items() if k.endswith("weight")][-1]
    h, w = shape[-2:]
    for _ in arch["channels"]:
        h, w = -(-h // 2), -(-w // 2)
    assert dense.shape[1] == arch["channels"][-1] * (1 if arch["pool"] == "avg" else h * w)
    assert model == "cnn" or arch["pool"] == "avg"


def test_cnn_takes_any_channel_count():
    net = build_model("cnn", embedding_size=8, pool="avg")
    assert embed(net, np.zeros((2, 5, 40, 33), np.float32)).shape == (2, 8)
    with pytest.raises(ValueError, match="pool must be"):
        EmbeddingCNN(pool="max")


def test_auto_picks_cnn_for_every_image_shape():
    for shape in [(28, 28), (1, 28, 28), (3, 32, 32), (3, 224, 160)]:
        assert resolve_model_name("auto", shape) == "cnn"
    assert resolve_model_name("auto", (784,)) == "mlp"
    with pytest.raises(ValueError, match="needs image samples"):
        resolve_model_name("resnet18_v1", (784,))
    with pytest.raises(ValueError, match="grey or RGB"):
        resolve_model_name("resnet18_v1", (4, 32, 32))


def test_registry_error_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet19'") as e:
        build_model("resnet19")
    for name in ("mlp", "cnn", "auto", "resnet18_v1", "resnet50_v2", "mobilenetv2_1.0"):
        assert name in str(e.value)


@pytest.mark.parametrize("name", ["resnet18_v1", "mobilenetv2_0.25"])
def test_backbone_embeds_grey_and_colour(name):
    net, resolved = model_from_config(Config(model=name, embedding_size=12), (3, 32, 32))
    assert resolved == name and isinstance(net, BackboneEmbedding)
    rgb = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    out = embed(net, rgb)
    assert out.shape == (3, 12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    grey = rgb[:, 0]
    np.testing.assert_allclose(embed(net, grey), embed(net, np.repeat(grey[:, None], 3, 1)))
    np.testing.assert_allclose(
        net.prepare_input(grey), np.repeat(grey[:, None], 3, 1)
    )  # the trainer's gather path gets the same layout


def test_pretrained_offline_is_one_clear_error(monkeypatch, tmp_path):
    from mxnet.gluon.model_zoo import model_store

    def offline(*args, **kwargs):
        raise ConnectionError("Max retries exceeded (Caused by NewConnectionError: [Errno -3])")

    monkeypatch.setattr(model_store, "download", offline)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    with pytest.raises(ValueError) as e:
        model_from_config(Config(model="resnet18_v1", pretrained=True), (3, 32, 32))
    message = str(e.value)
    assert "\n" not in message and "--pretrained: Gluon could not fetch" in message
    assert "--pretrained-params FILE" in message
    with pytest.raises(ValueError, match="--pretrained applies to Gluon model-zoo backbones"):
        model_from_config(Config(model="cnn", pretrained=True), (28, 28))


def test_pretrained_params_load_into_a_fresh_run(tmp_path):
    from mxnet.gluon.model_zoo import vision

    zoo = vision.get_model("resnet18_v1")
    zoo.initialize(mx.init.Xavier())
    zoo(nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path / "resnet18.params")
    zoo.save_parameters(path)
    config = Config(model="resnet18_v1", pretrained_params=path, embedding_size=8)
    net, _ = model_from_config(config, (3, 32, 32))
    got = net.features._collect_params_with_prefix()
    want = zoo.features._collect_params_with_prefix()
    for key in want:
        np.testing.assert_array_equal(got[key].data().asnumpy(), want[key].data().asnumpy())
    # a fresh net without the file differs
    other, _ = model_from_config(Config(model="resnet18_v1", embedding_size=8), (3, 32, 32))
    embed(other, np.zeros((1, 3, 32, 32), np.float32))  # finish the deferred initialisation
    first = next(iter(want))
    assert not np.allclose(
        other.features._collect_params_with_prefix()[first].data().asnumpy(),
        want[first].data().asnumpy(),
    )
    cnn = build_model("cnn")
    embed(cnn, np.zeros((1, 28, 28), np.float32))
    cnn.save_parameters(str(tmp_path / "cnn.params"))
    with pytest.raises(ValueError, match="not the weights of resnet18_v1"):
        model_from_config(
            Config(model="resnet18_v1", pretrained_params=str(tmp_path / "cnn.params")),
            (3, 32, 32),
        )
    (tmp_path / "junk.params").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not an MXNet parameter file"):
        model_from_config(
            Config(model="resnet18_v1", pretrained_params=str(tmp_path / "junk.params")),
            (3, 32, 32),
        )


def test_train_a_backbone_run_and_load_it(tmp_path, capsys):
    from gluon_triplet.cli import main
    from gluon_triplet.data.mnist import _mnist_5k_arrays

    x, y = _mnist_5k_arrays()
    pick = np.concatenate([np.flatnonzero(y == c)[:12] for c in range(3)])
    np.savez(tmp_path / "d.npz", x=(np.asarray(x)[pick] * 255).astype(np.uint8), y=y[pick])
    zoo_file = tmp_path / "start.params"
    from mxnet.gluon.model_zoo import vision

    zoo = vision.get_model("mobilenetv2_0.25")
    zoo.initialize(mx.init.Xavier())
    zoo(nd.zeros((1, 3, 28, 28)))
    zoo.save_parameters(str(zoo_file))
    settings = {
        "dataset": f"npz:{tmp_path / 'd.npz'}",
        "model": "mobilenetv2_0.25",
        "pretrained_params": str(zoo_file),
        "embedding_size": 8,
        "epochs": 1,
        "pk_classes": 3,
        "pk_samples": 4,
        "plots": False,
        "projector_samples": 0,
        "logdir": str(tmp_path / "logs"),
        "run_name": "r",
    }
    (tmp_path / "c.json").write_text(json.dumps(settings))
    status = main(["--config", str(tmp_path / "c.json")])
    # One epoch of 9 batches from random starting weights may end with every embedding
    # on one point: then the run says so and exits 2, and its directory still loads.
    err = capsys.readouterr().err
    assert status == 0 or (status == 2 and "error: the embedding is collapsed" in err), err
    os.remove(zoo_file)  # a trained run needs only its own directory
    net, config = load_run(str(tmp_path / "logs" / "r"))
    assert config.model == "mobilenetv2_0.25" and config.input_shape == (28, 28)
    assert embed(net, np.asarray(x)[:4]).shape == (4, 8)
