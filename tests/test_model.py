import mxnet as mx
import numpy as np
import pytest

from gluon_triplet.nets.embed import embed
from gluon_triplet.nets.mlp import EmbeddingMLP
from gluon_triplet.nets.zoo import build_model


def test_default_is_the_reference_net():
    net = build_model("mlp")
    dense = [blk for blk in net.body]
    assert [d._units for d in dense] == [256, 128]
    assert all(d.act is not None and d.act._act_type == "relu" for d in dense)
    net(mx.nd.zeros((2, 28, 28)))
    w = net.body[0].weight.data().asnumpy()
    assert w.shape == (256, 784)
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09  # Uniform(0.1)


def test_options_linear_normalized_sizes():
    net = build_model("mlp", hidden=(32, 16), embedding_size=8, output="linear", normalize=True)
    out = net(mx.nd.random.uniform(shape=(5, 3, 4))).asnumpy()
    assert out.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert (out < 0).any()  # linear output keeps negative coordinates
    assert net.body[-1].act is None


def test_normalize_all_zero_output_is_finite():
    net = EmbeddingMLP(hidden=(), embedding_size=4, normalize=True)
    net.initialize(mx.init.Zero())
    out = net(mx.nd.ones((3, 2))).asnumpy()
    assert np.isfinite(out).all()


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="choose one of: cnn, convnet, mlp"):
        build_model("resnet")


def test_embed_batches_match_one_pass_and_hybridized():
    net = build_model("mlp", hidden=(16,), embedding_size=4)
    x = np.random.default_rng(0).random((37, 6)).astype(np.float32)
    full = net(mx.nd.array(x)).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(embed(net, x, batch_size=10), full, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        embed(net, x[:0])
