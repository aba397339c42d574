import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_triplet import build_model, embed
from gluon_triplet.nets.export import ExportError, export_model, load_onnx_session


def run_onnx(path, x):
    session = load_onnx_session(path)
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


def real_images(n=12):
    # Real digits, not noise: the bundled mnist-5k set.
    from gluon_triplet import load_dataset

    return load_dataset("mnist-5k").x_test[:n]


@pytest.mark.parametrize("normalize", [True, False])
def test_mlp_to_onnx_matches_embed_for_any_batch(tmp_path, normalize):
    net = build_model("mlp", normalize=normalize, output="linear" if normalize else "relu")
    x = real_images()
    doc = export_model(net, x.shape[1:], str(tmp_path / "out"), format="onnx", batch=x[:4])
    assert sorted(os.listdir(tmp_path / "out")) == ["export.json", "model.onnx"]
    assert doc["input"]["shape"] == [None, 28, 28] and doc["embedding_size"] == 128
    assert doc["max_abs_diff"] <= 1e-4
    # The batch dimension is dynamic: other batch sizes than the verification one work.
    for n in (1, 12):
        got = run_onnx(str(tmp_path / "out" / "model.onnx"), x[:n])
        np.testing.assert_allclose(got, embed(net, x[:n]), atol=1e-4)
    assert json.loads((tmp_path / "out" / "export.json").read_text()) == doc


def test_cnn_with_l2_normalization_to_onnx(tmp_path):
    # The default recipe's net: L2Normalization(mode="instance"), which MXNet's converter
    # alone refuses.
    net = build_model("cnn", normalize=True, output="linear")
    x = real_images()
    export_model(net, (1, 28, 28), str(tmp_path / "cnn"), format="onnx")
    got = run_onnx(str(tmp_path / "cnn" / "model.onnx"), x[:, None])
    want = embed(net, x)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_model_zoo_backbone_with_head_to_onnx_and_mxnet(tmp_path):
    backbone = gluon.model_zoo.vision.mobilenet_v2_0_25(pretrained=False).features
    net = gluon.nn.HybridSequential()
    net.add(backbone, gluon.nn.Dense(32))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    for fmt in ("onnx", "mxnet"):
        doc = export_model(net, (3, 32, 32), str(tmp_path / fmt), format=fmt, batch=x)
        assert doc["max_abs_diff"] <= 1e-4
    got = run_onnx(str(tmp_path / "onnx" / "model.onnx"), x)
    np.testing.assert_allclose(got, net(mx.nd.array(x)).asnumpy(), atol=1e-4)


@pytest.mark.filterwarnings("ignore:Cannot decide type")
def test_mxnet_format_reloads_with_symbol_block(tmp_path):
    net = build_model("cnn", normalize=True, output="linear")
    x = real_images(5)
    doc = export_model(net, (1, 28, 28), str(tmp_path / "mx"), format="mxnet")
    assert doc["files"] == ["model-0000.params", "model-symbol.json"]
    block = gluon.SymbolBlock.imports(
        str(tmp_path / "mx" / "model-symbol.json"),
        ["data"],
        str(tmp_path / "mx" / "model-0000.params"),
    )
    np.testing.assert_allclose(block(mx.nd.array(x[:, None])).asnumpy(), embed(net, x), atol=1e-5)


class SoftsignHead(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dense = gluon.nn.Dense(8)

    def hybrid_forward(self, F, x):
        return F.softsign(self.dense(x))


def test_unsupported_operator_is_named_and_nothing_written(tmp_path):
    net = SoftsignHead()
    net.initialize()
    with pytest.raises(ExportError, match="no ONNX conversion for operator softsign") as err:
        export_model(net, (5,), str(tmp_path / "out"), format="onnx")
    assert "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []
    # The MXNet format has no converter to fail.
    export_model(net, (5,), str(tmp_path / "out"), format="mxnet")


def test_mismatch_is_an_error(tmp_path, monkeypatch):
    from gluon_triplet.nets import export

    net = build_model("mlp")
    original = export._verify_onnx

    def off_by(path, batch):
        out, io = original(path, batch)
        return out + 1e-3, io

    monkeypatch.setattr(export, "_verify_onnx", off_by)
    with pytest.raises(
        ExportError, match=r"does not reproduce the net: max \|diff\| 0.001 > 0.0001"
    ):
        export_model(net, (28, 28), str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


def test_bad_arguments(tmp_path):
    net = build_model("mlp")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists"):
        export_model(net, (28, 28), str(tmp_path / "full"))
    assert (tmp_path / "full" / "x").read_text() == "keep"
    with pytest.raises(
        ValueError, match="unknown export format 'tflite'; choose one of: onnx, mxnet"
    ):
        export_model(net, (28, 28), str(tmp_path / "o"), format="tflite")
    with pytest.raises(ValueError, match=r"batch must be \(B, \*\(28, 28\)\)"):
        export_model(net, (28, 28), str(tmp_path / "o"), batch=np.zeros((2, 5)))


def test_missing_optional_package_names_pip_package(monkeypatch):
    import sys

    from gluon_triplet.optional import require

    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="needs the onnxruntime package: pip install onnxruntime"):
        require("onnxruntime", "running an ONNX export")


def test_pool_first_cnn_with_batch_norm_to_onnx(tmp_path):
    # A pool-first CNN with BatchNorm everywhere (a bench recipe's architecture):
    # BatchNorm's running statistics (set away from 0 and 1) on the pooled maps travel
    # with the export.
    from gluon_triplet.config import Config
    from gluon_triplet.nets.zoo import model_from_config

    arch = {"block": "pooled", "channels": (16, 32, 128), "batch_norm": True, "pool_first": True}
    config = Config(model="cnn", architecture=arch)
    net, _ = model_from_config(config, (28, 28))
    x = real_images()
    net(mx.nd.array(x))  # deferred initialisation
    for bn in (b for b in net.body if isinstance(b, gluon.nn.BatchNorm)):
        bn.running_mean.set_data(mx.nd.full(bn.running_mean.shape, 0.05))
        bn.running_var.set_data(mx.nd.full(bn.running_var.shape, 0.5))
    export_model(net, (1, 28, 28), str(tmp_path / "cnn"), format="onnx")
    got = run_onnx(str(tmp_path / "cnn" / "model.onnx"), x[:, None])
    np.testing.assert_allclose(got, embed(net, x), atol=1e-4)
