import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluon_triplet.config import Config, ConfigError
from gluon_triplet.nets.architectures import cnn_architecture, legacy_cnn_architecture
from gluon_triplet.nets.cnn import EmbeddingCNN
from gluon_triplet.nets.embed import embed
from gluon_triplet.nets.zoo import MODELS, build_model, model_from_config


def images(n, *shape, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def cnn(model="cnn", **architecture):
    """A Config whose CNN is ``architecture`` (EmbeddingCNN's arguments), as a run records
    it or a JSON config (a bench recipe) sets it."""
    return Config(model=model, architecture=architecture)


def test_registered_and_built_like_the_reference_convnet():
    assert MODELS["cnn"] is EmbeddingCNN and MODELS["convnet"] is EmbeddingCNN
    net = build_model("cnn")
    out = net(mx.nd.array(images(2, 28, 28)))
    assert out.shape == (2, 128)
    conv1, conv2, _, dense = net.body
    assert conv1.weight.shape == (32, 1, 5, 5) and conv2.weight.shape == (64, 32, 5, 5)
    assert conv1._kwargs["stride"] == (2, 2) and conv1._kwargs["pad"] == (2, 2)
    assert dense.weight.shape == (128, 7 * 7 * 64)
    assert dense.act is not None and dense.act._act_type == "relu"
    w = dense.weight.data().asnumpy()
    assert np.abs(w).max() <= 0.1  # build_model's Uniform(init_scale)


def test_three_and_four_dimensional_inputs():
    net = build_model("cnn", embedding_size=8, channels=(4, 8))
    x = images(5, 28, 28)
    flat = net(mx.nd.array(x)).asnumpy()
    with_channel = net(mx.nd.array(x[:, None])).asnumpy()
    assert flat.shape == (5, 8)
    np.testing.assert_array_equal(flat, with_channel)
    # Several input channels and odd sizes: (B, C, H, W) with C = 3, 15x15 -> 8x8 -> 4x4.
    rgb = build_model("cnn", embedding_size=6, channels=(4, 8))
    assert rgb(mx.nd.array(images(3, 3, 15, 15))).shape == (3, 6)
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, C, H, W\).*\(3, 784\)"):
        net(mx.nd.zeros((3, 784)))


def test_options_linear_normalized_hidden():
    net = build_model(
        "cnn", embedding_size=8, channels=(4,), output="linear", normalize=True, hidden=(16,)
    )
    out = net(mx.nd.array(images(6, 12, 12) - 0.5)).asnumpy()
    assert out.shape == (6, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert (out < 0).any()
    assert net.body[-1].act is None and net.body[-2].weight.shape[0] == 16
    with pytest.raises(ValueError, match="output must be"):
        EmbeddingCNN(output="tanh")
    with pytest.raises(ValueError, match="channels must be one or more widths"):
        EmbeddingCNN(channels=())


def test_normalize_all_zero_output_is_finite():
    net = EmbeddingCNN(embedding_size=4, channels=(2,), normalize=True)
    net.initialize(mx.init.Zero())
    out = net(mx.nd.ones((2, 8, 8))).asnumpy()
    assert np.isfinite(out).all()


def test_hybridized_static_matches_imperative_and_embed():
    net = build_model("cnn", embedding_size=8, channels=(4, 8))
    x = images(10, 28, 28, seed=1)
    imperative = net(mx.nd.array(x)).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(hybrid, imperative, rtol=1e-5, atol=1e-6)
    # Same shape again (the static graph is reused), then 4-D input of the same shape.
    np.testing.assert_allclose(net(mx.nd.array(x)).asnumpy(), imperative, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        net(mx.nd.array(x[:, None])).asnumpy(), imperative, rtol=1e-5, atol=1e-6
    )
    # embed() on (N, 28, 28) numpy, in batches (the last one smaller).
    np.testing.assert_allclose(embed(net, x, batch_size=4), imperative, rtol=1e-5, atol=1e-6)


def test_trains_through_the_hybridized_graph():
    net = build_model("cnn", embedding_size=4, channels=(4,), output="linear")
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x = mx.nd.array(images(6, 8, 8))
    net(x)  # deferred initialisation happens on the first pass
    before = net.body[0].weight.data().asnumpy().copy()
    with autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()
    trainer.step(6)
    grad = net.body[0].weight.grad().asnumpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    assert not np.allclose(net.body[0].weight.data().asnumpy(), before)


def test_batch_norm_option_normalises_with_batch_statistics_when_training():
    net, name = model_from_config(cnn(block="strided", channels=(4, 8), batch_norm=True), (28, 28))
    assert name == "cnn"
    net(mx.nd.array(images(2, 28, 28)))  # deferred initialisation
    conv1, bn1, act1, conv2, bn2, act2, _, dense = net.body
    assert conv1.weight.shape == (4, 1, 5, 5) and conv2.weight.shape == (8, 4, 5, 5)
    assert conv1.bias is None  # BatchNorm's beta is the shift
    assert isinstance(bn1, gluon.nn.BatchNorm) and isinstance(act2, gluon.nn.Activation)
    # gamma/beta keep BatchNorm's own init (ones/zeros), not the net's Uniform.
    assert (bn1.gamma.data().asnumpy() == 1).all() and (bn1.beta.data().asnumpy() == 0).all()

    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.array(images(16, 28, 28) * 5 + 3)  # far from zero mean, unit variance
    probe = gluon.nn.HybridSequential()
    probe.add(conv1, bn1)
    with autograd.record():  # training mode: batch statistics
        z = probe(x.expand_dims(1)).asnumpy()
    per_channel = z.transpose(1, 0, 2, 3).reshape(4, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0, atol=1e-3)
    np.testing.assert_allclose(per_channel.std(axis=1), 1, atol=1e-2)
    # Embedding (inference) uses the running statistics: deterministic per sample.
    one = embed(net, images(3, 28, 28), batch_size=1)
    three = embed(net, images(3, 28, 28), batch_size=3)
    np.testing.assert_allclose(one, three, rtol=1e-5, atol=1e-6)

    # An architecture is the CNN's: not the MLP's, and not for samples that are no images.
    with pytest.raises(ConfigError, match="architecture applies to the cnn and convnet"):
        cnn(model="mlp", channels=(4, 8), batch_norm=True)
    with pytest.raises(ValueError, match="model 'cnn' needs image samples"):
        model_from_config(cnn(channels=(4, 8), batch_norm=True), (784,))
    with pytest.raises(ConfigError, match="architecture channels must be one or more"):
        cnn(channels=(8, 0))


def test_pooled_block_is_3x3_convolutions_each_followed_by_max_pooling():
    net, name = model_from_config(
        cnn(block="pooled", channels=(4, 8, 16), batch_norm=True), (28, 28)
    )
    assert name == "cnn"
    x = images(3, 28, 28)
    assert net(mx.nd.array(x)).shape == (3, 128)
    convs = [b for b in net.body if isinstance(b, gluon.nn.Conv2D)]
    pools = [b for b in net.body if isinstance(b, gluon.nn.MaxPool2D)]
    assert [c.weight.shape for c in convs] == [(4, 1, 3, 3), (8, 4, 3, 3), (16, 8, 3, 3)]
    assert all(c._kwargs["stride"] == (1, 1) and c._kwargs["pad"] == (1, 1) for c in convs)
    assert len(pools) == 3
    # 28 -> 14 -> 7 -> 4 (rounding up, like the strided convolutions): 4 * 4 * 16 features.
    assert net.body[-1].weight.shape == (128, 4 * 4 * 16)
    # Against brute force: the first block (conv, BatchNorm at inference, ReLU, max-pool)
    # computed with NumPy.
    conv, bn = convs[0], net.body[1]
    w, (gamma, beta) = conv.weight.data().asnumpy(), (bn.gamma.data(), bn.beta.data())
    mean, var = bn.running_mean.data().asnumpy(), bn.running_var.data().asnumpy()
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    z = np.einsum("nhwij,cij->nchw", windows, w[:, 0])
    z = (z - mean[:, None, None]) / np.sqrt(var[:, None, None] + bn._kwargs["eps"])
    z = np.maximum(z * gamma.asnumpy()[:, None, None] + beta.asnumpy()[:, None, None], 0)
    want = z.reshape(3, 4, 14, 2, 14, 2).max(axis=(3, 5))
    first = gluon.nn.HybridSequential()
    first.add(*net.body[:4])
    np.testing.assert_allclose(first(mx.nd.array(x[:, None])).asnumpy(), want, rtol=1e-4, atol=1e-5)
    # --model cnn up to 32 px: three pooled blocks of POOLED_CHANNELS; the default (auto)
    # is that net for MNIST-sized pictures; --model convnet is the reference convnet's
    # pair of strided 5x5 convolutions.
    pooled, name = model_from_config(Config(model="cnn"), (28, 28))
    widths = [b.weight.shape[0] for b in pooled.body if isinstance(b, gluon.nn.Conv2D)]
    assert name == "cnn" and widths == [16, 32, 128]
    default, _ = model_from_config(Config(), (28, 28))
    default(mx.nd.array(x))  # deferred initialisation
    assert [b.weight.shape for b in default.body if isinstance(b, gluon.nn.Conv2D)] == [
        (16, 1, 3, 3),
        (32, 16, 3, 3),
        (128, 32, 3, 3),
    ]
    strided, name = model_from_config(Config(model="convnet"), (28, 28))
    assert name == "convnet"
    assert [b.weight.shape[-1] for b in strided.body if isinstance(b, gluon.nn.Conv2D)] == [5, 5]
    # Pooled at every size up to 32 px; the convnet strided at every size (three strided
    # convolutions and global pooling at 40 px). auto is the MLP for non-images.
    small, _ = model_from_config(Config(), (3, 32, 32))
    assert [b.weight.shape[-1] for b in small.body if isinstance(b, gluon.nn.Conv2D)] == [3] * 3
    large, _ = model_from_config(Config(model="convnet"), (3, 40, 40))
    assert {b.weight.shape[-1] for b in large.body if isinstance(b, gluon.nn.Conv2D)} == {5}
    assert model_from_config(Config(), (784,))[1] == "mlp"
    with pytest.raises(ConfigError, match="architecture block must be one of strided, pooled"):
        cnn(block="dilated", channels=(4,))
    with pytest.raises(ConfigError, match="architecture applies to the cnn and convnet"):
        cnn(model="mlp", block="pooled", channels=(4,))
    with pytest.raises(ValueError, match="block must be one of"):
        EmbeddingCNN(block="dilated")


def test_batch_norm_from_leaves_the_first_convolutions_without_batch_norm():
    def layers(config):
        net, _ = model_from_config(config, (28, 28))
        net(mx.nd.array(images(2, 28, 28)))  # deferred initialisation
        return net, [type(b).__name__ for b in net.body]

    p3 = {"block": "pooled", "channels": (16, 32, 128)}
    net, kinds = layers(cnn(**p3, batch_norm=True, batch_norm_from=2))
    # The full-resolution first convolution keeps its bias and ReLU; the others are
    # conv (no bias) -> BatchNorm -> ReLU, each then max-pooled.
    assert kinds == [
        "Conv2D", "MaxPool2D",
        "Conv2D", "BatchNorm", "Activation", "MaxPool2D",
        "Conv2D", "BatchNorm", "Activation", "MaxPool2D",
        "Flatten", "Dense",
    ]  # fmt: skip
    convs = [b for b in net.body if isinstance(b, gluon.nn.Conv2D)]
    assert convs[0].bias is not None and convs[0].act is not None
    assert convs[1].bias is None and convs[2].bias is None
    _, kinds3 = layers(cnn(**p3, batch_norm=True, batch_norm_from=3))
    assert kinds3.count("BatchNorm") == 1 and kinds3.index("BatchNorm") == 5
    # batch_norm alone is every convolution; past the last convolution there is none;
    # without batch_norm, batch_norm_from changes nothing.
    assert layers(cnn(**p3, batch_norm=True))[1].count("BatchNorm") == 3
    assert "BatchNorm" not in layers(cnn(**p3, batch_norm=True, batch_norm_from=4))[1]
    off = layers(cnn(**p3, batch_norm=False, batch_norm_from=2))[1]
    assert "BatchNorm" not in off
    assert off == layers(cnn(**p3, batch_norm=False))[1]
    # The default (auto, and --model cnn) up to 32 px: the pooled CNN's last convolution
    # only, as batch_norm_from=3 builds it; none in the convnet.
    assert cnn_architecture("cnn", (28, 28))["batch_norm_from"] == 3
    assert layers(Config())[1] == kinds3 == layers(Config(model="cnn"))[1]
    moved = {**cnn_architecture("cnn", (28, 28)), "batch_norm_from": 2}
    assert layers(cnn(**moved))[1] == kinds
    assert "BatchNorm" not in layers(Config(model="convnet"))[1]
    # Run dirs of earlier versions recorded batch_norm null (automatic) or a choice; read
    # with the rules of that time: the pooled CNN's last convolution, however deep.
    assert (
        legacy_cnn_architecture({"conv_block": "pooled", "batch_norm": None}, (28, 28))[
            "batch_norm_from"
        ]
        == 3
    )
    deep = {"conv_block": "pooled", "batch_norm": None, "channels": (4, 4, 4, 4)}
    assert legacy_cnn_architecture(deep, (28, 28))["batch_norm_from"] == 4
    deeper, _ = model_from_config(cnn(**legacy_cnn_architecture(deep, (28, 28))), (28, 28))
    assert [type(b).__name__ for b in deeper.body].count("BatchNorm") == 1
    strided = legacy_cnn_architecture({"conv_block": "strided", "batch_norm": None}, (28, 28))
    assert (strided["batch_norm"], strided["batch_norm_from"]) == (False, 1)
    strided = legacy_cnn_architecture({"conv_block": "strided", "batch_norm": True}, (28, 28))
    assert (strided["batch_norm"], strided["batch_norm_from"]) == (True, 1)
    with pytest.raises(ConfigError, match="batch_norm_from must be an integer >= 1, got 0"):
        cnn(**p3, batch_norm=True, batch_norm_from=0)
    with pytest.raises(ValueError, match="batch_norm_from must be an integer >= 1"):
        EmbeddingCNN(batch_norm=True, batch_norm_from=0)


def test_pool_first_max_pools_before_batch_norm_and_relu():
    net, _ = model_from_config(
        cnn(
            block="pooled",
            channels=(16, 32, 128),
            batch_norm=True,
            batch_norm_from=2,
            pool_first=True,
        ),
        (28, 28),
    )
    x = mx.nd.array(images(4, 28, 28))
    assert net(x).shape == (4, 128)
    assert [type(b).__name__ for b in net.body] == [
        "Conv2D", "MaxPool2D", "Activation",
        "Conv2D", "MaxPool2D", "BatchNorm", "Activation",
        "Conv2D", "MaxPool2D", "BatchNorm", "Activation",
        "Flatten", "Dense",
    ]  # fmt: skip
    convs = [b for b in net.body if isinstance(b, gluon.nn.Conv2D)]
    assert convs[0].bias is not None and convs[0].act is None and convs[1].bias is None
    # Without BatchNorm the order changes nothing: ReLU commutes with max-pooling, so the
    # same weights give the same embedding as the usual conv -> ReLU -> pool.
    plain = {"block": "pooled", "channels": (16, 32, 128), "batch_norm": False}
    first, _ = model_from_config(cnn(**plain, pool_first=True), (28, 28))
    usual, _ = model_from_config(cnn(**plain), (28, 28))
    first(x), usual(x)
    for a, b in zip(first.collect_params().values(), usual.collect_params().values()):
        b.set_data(a.data())
    np.testing.assert_allclose(embed(first, x), embed(usual, x), atol=1e-6)
    # BatchNorm normalises the pooled map: zero mean, unit variance per channel in training.
    probe = gluon.nn.HybridSequential()
    probe.add(*list(net.body)[3:6])  # conv 2, its pooling, its BatchNorm
    with autograd.record():
        z = probe(mx.nd.array(images(8, 16, 14, 14) * 4 + 1)).asnumpy()
    assert z.shape == (8, 32, 7, 7)
    per_channel = z.transpose(1, 0, 2, 3).reshape(32, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0, atol=1e-3)
    np.testing.assert_allclose(per_channel.std(axis=1), 1, atol=1e-2)
    # Pooled blocks only (the convnet's are strided); not for the MLP.
    with pytest.raises(ConfigError, match="pool_first applies to pooled blocks"):
        cnn(model="convnet", block="strided", channels=(32, 64), pool_first=True)
    strided = {**cnn_architecture("convnet", (3, 40, 40)), "pool_first": True}
    with pytest.raises(ValueError, match="pool_first applies to pooled blocks, not 'strided'"):
        build_model("convnet", **strided)
    with pytest.raises(ConfigError, match="architecture applies to the cnn"):
        cnn(model="mlp", block="pooled", channels=(4,), pool_first=True)
