"""Export a trained embedding net to serve it elsewhere: ONNX (no MXNet needed) or MXNet's
symbol + params, each verified on the spot.

::

    export_model(net, (1, 28, 28), "served", format="onnx")   # served/model.onnx
    export_model(net, (1, 28, 28), "served", format="mxnet")  # served/model-symbol.json ...

``format="onnx"`` converts the hybridized graph with ``mxnet.onnx.export_model`` (a
dynamic batch dimension; ``L2Normalization`` is rewritten into operators the converter
translates); ``format="mxnet"`` is ``HybridBlock.export``, reloadable with
``gluon.SymbolBlock.imports``. Either way the written model is loaded back and embeds a
batch, which must match the net to max |diff| <= 1e-4; otherwise :class:`ExportError` and
nothing is left in the output directory. ``export.json`` records the input and output,
the max |diff| and the provenance passed in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import ExportError
from ..io import new_directory_parent
from ..optional import require
from ..resources import error_line, raise_write_error

__all__ = ["EXPORT_FORMATS", "ExportError", "export_model", "load_onnx_session"]

#: Formats :func:`export_model` writes.
EXPORT_FORMATS = ("onnx", "mxnet")
#: Largest accepted max |exported - net| on the verification batch.
TOLERANCE = 1e-4
_PREFIX = "model"


def _node_output_name(node: Dict[str, Any], index: int, outputs: Sequence[str]) -> str:
    if node["op"] == "null":
        return node["name"]
    for name in (f"{node['name']}_output", f"{node['name']}_output{index}"):
        if name in outputs:
            return name
    return node["name"]


def _rewrite_instance_l2norm(sym, input_shape):
    """Replace ``L2Normalization(mode="instance")`` by ops the ONNX converter translates.

    Returns the rewritten symbol and the number of nodes rewritten. MXNet computes
    ``x / sqrt(sum(x^2) + eps)`` per sample; so do the replacement nodes
    (``square -> sum(axis=1..ndim-1, keepdims) -> _plus_scalar(eps) -> sqrt ->
    broadcast_div``), the last of which keeps the original node's name so the graph's
    output names do not change.
    """
    import mxnet as mx

    graph = json.loads(sym.tojson())
    nodes = graph["nodes"]
    targets = [
        i
        for i, n in enumerate(nodes)
        if n["op"] == "L2Normalization" and n.get("attrs", {}).get("mode", "instance") == "instance"
    ]
    if not targets:
        return sym, 0
    internals = sym.get_internals()
    outputs = internals.list_outputs()
    _, shapes, _ = internals.infer_shape(data=input_shape)
    shape_of = dict(zip(outputs, shapes))
    new_nodes, remap = [], {}

    def add(node):
        new_nodes.append(node)
        return len(new_nodes) - 1

    for i, node in enumerate(nodes):
        inputs = [[remap[src], idx, ver] for src, idx, ver in node["inputs"]]
        if i not in targets:
            remap[i] = add(dict(node, inputs=inputs))
            continue
        src, idx, _ = node["inputs"][0]
        ndim = len(shape_of[_node_output_name(nodes[src], idx, outputs)])
        eps = node.get("attrs", {}).get("eps", "1e-10")
        name = node["name"]
        x = inputs[0]
        sq = add({"op": "square", "name": f"{name}_square", "inputs": [x]})
        axes = "(" + ", ".join(str(a) for a in range(1, ndim)) + ("," if ndim == 2 else "") + ")"
        total = add(
            {
                "op": "sum",
                "name": f"{name}_sum",
                "attrs": {"axis": axes, "keepdims": "True"},
                "inputs": [[sq, 0, 0]],
            }
        )
        shifted = add(
            {
                "op": "_plus_scalar",
                "name": f"{name}_plus_eps",
                "attrs": {"scalar": str(eps)},
                "inputs": [[total, 0, 0]],
            }
        )
        norm = add({"op": "sqrt", "name": f"{name}_norm", "inputs": [[shifted, 0, 0]]})
        remap[i] = add({"op": "broadcast_div", "name": name, "inputs": [x, [norm, 0, 0]]})
    graph["nodes"] = new_nodes
    graph["arg_nodes"] = [i for i, n in enumerate(new_nodes) if n["op"] == "null"]
    graph["heads"] = [[remap[src], idx, ver] for src, idx, ver in graph["heads"]]
    graph.pop("node_row_ptr", None)
    return mx.sym.load_json(json.dumps(graph)), len(targets)


def _unconvertible_ops(sym):
    """Operators of ``sym`` that MXNet's ONNX converter has no translation for."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    known = set()
    for table in MXNetGraph.registry_.values():
        known.update(table)
    ops = {n["op"] for n in json.loads(sym.tojson())["nodes"] if n["op"] != "null"}
    return sorted(ops - known)


def load_onnx_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU ``InferenceSession`` of an ONNX file (``threads`` per run, and
    one run at a time per call, when given; default: onnxruntime's)."""
    ort = require("onnxruntime", "running an ONNX export")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initialisers on stderr
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _export_onnx(sym, params, input_shape, path):
    require("onnx", "ONNX export")
    import mxnet as mx

    mx_onnx = mx.onnx
    sym, _ = _rewrite_instance_l2norm(sym, input_shape)
    missing = _unconvertible_ops(sym)
    if missing:
        raise ExportError(
            f"cannot export to ONNX: MXNet has no ONNX conversion for operator "
            f"{', '.join(missing)}; use --format mxnet"
        )
    try:
        mx_onnx.export_model(
            sym,
            params,
            in_shapes=[input_shape],
            in_types=[np.float32],
            onnx_file_path=path,
            dynamic=True,
            dynamic_input_shapes=[(None,) + tuple(input_shape[1:])],
        )
    except (AttributeError, NotImplementedError, ValueError, TypeError, KeyError) as e:
        # The converters raise these for attributes they cannot translate; their messages
        # start with the operator's name.
        raise ExportError(f"cannot export to ONNX: {error_line(e)}; use --format mxnet") from None
    _drop_initializer_inputs(path)


def _drop_initializer_inputs(path):
    """Keep only the real inputs among the graph's inputs.

    MXNet's exporter also lists every weight as a graph input, which makes onnxruntime warn
    about each one and skip constant folding: a weight that is an input could be overridden
    at run time.
    """
    import onnx

    model = onnx.load(path)
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _verify_onnx(path, batch):
    session = load_onnx_session(path)
    name = session.get_inputs()[0].name
    out = session.run(None, {name: batch})[0]
    return out, {
        "input": {"name": name, "shape": [None] + list(batch.shape[1:]), "dtype": "float32"},
        "output": {"name": session.get_outputs()[0].name},
    }


def _verify_mxnet(directory, batch):
    import warnings

    import mxnet as mx
    from mxnet import gluon

    with warnings.catch_warnings():
        # "Cannot decide type for ... data": the input's dtype is only known at the call.
        warnings.simplefilter("ignore", UserWarning)
        block = gluon.SymbolBlock.imports(
            os.path.join(directory, f"{_PREFIX}-symbol.json"),
            ["data"],
            os.path.join(directory, f"{_PREFIX}-0000.params"),
            ctx=mx.cpu(),
        )
    out = block(mx.nd.array(batch)).asnumpy()
    return out, {
        "input": {"name": "data", "shape": [None] + list(batch.shape[1:]), "dtype": "float32"},
        "output": {"name": "output0"},
    }


def export_model(
    net,
    sample_shape: Sequence[int],
    out_dir: str,
    format: str = "onnx",
    batch: Optional[np.ndarray] = None,
    info: Optional[Dict[str, Any]] = None,
    preprocess: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Export ``net`` and check that the export computes the same embeddings.

    Parameters
    ----------
    net : gluon.HybridBlock
        On the CPU, initialised. It is hybridized if it is not yet.
    sample_shape : tuple of int
        Shape of one sample as the graph sees it, e.g. ``(1, 28, 28)`` for
        :class:`~gluon_triplet.nets.cnn.EmbeddingCNN` (which adds the channel axis to
        ``(B, H, W)`` input outside the graph) or ``(28, 28)`` for the MLP. The exported
        model takes ``(B, *sample_shape)`` float32 for any ``B``.
    out_dir : str
        A new (or empty) directory.
    format : {"onnx", "mxnet"}
    batch : (B, *sample_shape) float32, optional
        Verification samples (default: 8 uniform random ones in [0, 1)).
    info : dict, optional
        Provenance to record in ``export.json`` (e.g. the run directory).
    preprocess : dict, optional
        How pictures become the model's input, recorded as ``export.json``'s
        ``"preprocess"`` (see :func:`gluon_triplet.nets.preprocess.preprocess_spec`).

    Returns
    -------
    dict
        The content of ``export.json``: ``format``, ``files``, ``input``, ``output``,
        ``embedding_size``, ``max_abs_diff`` and ``info``.

    Raises
    ------
    ExportError
        An operator cannot be converted (named), or the export's output differs from the
        net's by more than 1e-4.
    FileExistsError
        ``out_dir`` exists and is not empty.
    """
    import mxnet as mx

    parent, sample_shape, samples = _check_export_args(sample_shape, out_dir, format, batch)
    net.hybridize()
    expected = net(mx.nd.array(samples, ctx=mx.cpu())).asnumpy()
    tmp = ""
    try:
        tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=parent)
        got, io = _write_export(net, tmp, format, sample_shape, samples)
        diff = _check_reproduces(got, expected, format, len(samples))
        doc = {
            "format": format,
            "files": sorted(os.listdir(tmp)),
            **io,
            "embedding_size": int(expected.shape[1]),
            "max_abs_diff": diff,
            "verified_on": len(samples),
            "info": dict(info or {}),
        }
        if preprocess is not None:
            doc["preprocess"] = dict(preprocess)
        _publish(tmp, out_dir, doc)
        return doc
    except BaseException as e:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        # A full or read-only disk: one line naming the directory and the free space.
        raise_write_error(out_dir, e)


def _publish(tmp: str, out_dir: str, doc: Dict[str, Any]) -> None:
    """Write ``doc`` as ``export.json`` into the finished ``tmp`` directory, then rename it
    to ``out_dir`` (which replaces an empty ``out_dir``): readers never see half an export."""
    with open(os.path.join(tmp, "export.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    os.chmod(tmp, 0o755)
    if os.path.isdir(out_dir):
        os.rmdir(out_dir)
    os.rename(tmp, out_dir)


def _check_export_args(sample_shape, out_dir, format, batch):
    """``(parent directory, sample shape, float32 batch)``; the errors of bad arguments."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: onnx, mxnet")
    parent = new_directory_parent(out_dir)
    sample_shape = tuple(int(s) for s in sample_shape)
    if not sample_shape or min(sample_shape) < 1:
        raise ValueError(f"sample_shape must be positive sizes, got {sample_shape}")
    if batch is None:
        batch = np.random.default_rng(0).random((8,) + sample_shape, dtype=np.float32)
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.shape[1:] != sample_shape:
        raise ValueError(f"batch must be (B, *{sample_shape}), got {batch.shape}")
    if format == "onnx":
        require("onnx", "ONNX export")
        require("onnxruntime", "checking an ONNX export")
    return parent, sample_shape, batch


def _write_export(net, directory, format, sample_shape, batch):
    """Write the model files into ``directory`` and load them back: ``(output, io)``."""
    import mxnet as mx

    # HybridBlock.export writes the graph traced by the last forward.
    net.export(os.path.join(directory, _PREFIX), epoch=0)
    if format != "onnx":
        return _verify_mxnet(directory, batch)
    sym = mx.sym.load(os.path.join(directory, f"{_PREFIX}-symbol.json"))
    params = mx.nd.load(os.path.join(directory, f"{_PREFIX}-0000.params"))
    params = {k.split(":", 1)[-1]: v for k, v in params.items()}
    _export_onnx(sym, params, (1,) + sample_shape, os.path.join(directory, "model.onnx"))
    for name in os.listdir(directory):
        if name != "model.onnx":
            os.unlink(os.path.join(directory, name))
    return _verify_onnx(os.path.join(directory, "model.onnx"), batch)


def _check_reproduces(got, expected, format, count):
    """The max |diff| between the export's output and the net's; ExportError over tolerance."""
    if got.shape != expected.shape:
        raise ExportError(
            f"the {format} export outputs {got.shape} for a batch the net maps to {expected.shape}"
        )
    diff = float(np.abs(got - expected).max())
    if not diff <= TOLERANCE:
        raise ExportError(
            f"the {format} export does not reproduce the net: max |diff| {diff:.3g} > "
            f"{TOLERANCE:g} on {count} samples"
        )
    return diff
