"""What ``gluon-triplet serve`` answers with, without the web framework: an index, the ONNX
export of the run that built it (run by onnxruntime: no MXNet), and the pictures of its
items.

::

    export_dir = ensure_export("fashion-index")       # INDEX/onnx, exported once if missing
    service = SearchService("fashion-index", export_dir)
    row = service.search(open("shoe.png", "rb").read(), k=10, name="shoe.png")

``row`` is one line of ``gluon-triplet search --json``. Nothing here imports MXNet except
:func:`ensure_export` when it has to export.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..data.headers import MAX_PIXELS
from ..errors import IndexFileError
from ..nets.export import load_onnx_session
from ..nets.preprocess import preprocess, read_preprocess_spec

__all__ = ["EXPORT_SUBDIR", "MAX_K", "SearchService", "ensure_export", "indexed_run"]

logger = logging.getLogger("gluon_triplet")

#: Where :func:`ensure_export` keeps the export of an index's run: ``INDEX_DIR/onnx``.
EXPORT_SUBDIR = "onnx"
#: Most neighbours one request may ask for.
MAX_K = 1000


def _manifest_run(index_dir: str) -> Dict[str, Any]:
    from .store import read_manifest

    doc = read_manifest(index_dir)
    if "params_sha256" not in doc or "params_file" not in doc:
        raise IndexFileError(
            f"{index_dir}: the manifest names no run (params_sha256, params_file); it was not "
            "built by `gluon-triplet index`"
        )
    return doc


def indexed_run(index_dir: str, run_dir: Optional[str] = None) -> Tuple[Any, str]:
    """The run an index was built with (``run_dir``, default the manifest's) and its
    parameter file, checked to be the indexed one (ValueError if it changed since)."""
    from ..io import sha256_file
    from ..runs.rundir import RunDir

    doc = _manifest_run(index_dir)
    run = RunDir.open(run_dir or doc.get("run_dir", ""))
    params = run.params_path(doc["params_file"])
    if sha256_file(params) != doc["params_sha256"]:
        raise ValueError(
            f"{params} changed since the index was built (SHA-256 differs from the "
            "manifest's); rebuild the index with gluon-triplet index"
        )
    return run, params


def ensure_export(
    index_dir: str, export_dir: Optional[str] = None, run_dir: Optional[str] = None
) -> str:
    """The directory of an ONNX export of the run an index was built with.

    ``export_dir`` (default ``INDEX_DIR/onnx``) is used when it exists; otherwise the run
    (``run_dir``, default the manifest's) is exported into it, once its parameter file is
    checked to be the indexed one. This is the only step that loads MXNet.

    Raises
    ------
    ValueError
        The run's parameters changed since the index was built.
    OSError
        The export cannot be written there.
    """
    _manifest_run(index_dir)
    out = export_dir or os.path.join(index_dir, EXPORT_SUBDIR)
    if os.path.exists(out):
        return out
    from ..runs.exported import export_run

    run, params = indexed_run(index_dir, run_dir)
    logger.info("exporting %s to %s (once; later starts reuse it)", run.path, out)
    try:
        _, source = export_run(run.path, out, "onnx", params)
    except PermissionError as e:
        raise PermissionError(
            f"cannot write the export to {out} ({e.strerror}); pass --export DIR"
        ) from None
    logger.info("export verified on %s samples", source)
    return out


class SearchService:
    """An index searched with pictures, embedded by its run's ONNX export.

    Parameters
    ----------
    index_dir : str
        Written by ``gluon-triplet index``.
    export_dir : str
        An ONNX export of the same parameters (:func:`ensure_export`).
    max_pixels : int
        Larger pictures are refused before they are decoded.
    threads : int
        onnxruntime threads per request (requests run side by side).

    Raises
    ------
    IndexFileError, ValueError
        The index or the export is unreadable, or they do not belong together.
    """

    def __init__(
        self,
        index_dir: str,
        export_dir: str,
        max_pixels: int = MAX_PIXELS,
        threads: int = 1,
    ):
        from .index import Index
        from .items import ItemPictures

        doc = _manifest_run(index_dir)
        self.index = Index.load(index_dir)
        self.index_dir = index_dir
        self.export_dir = export_dir
        self.export = _read_export(export_dir)
        info = self.export.get("info", {})
        if info.get("params_sha256") != doc["params_sha256"]:
            raise ValueError(
                f"{export_dir} was exported from other parameters than the index was built "
                "with (SHA-256 differs); remove it or pass another --export"
            )
        if self.export.get("embedding_size") != self.index.dim:
            raise ValueError(
                f"{export_dir} embeds into {self.export.get('embedding_size')} dimensions, "
                f"the index holds {self.index.dim}"
            )
        self.spec = read_preprocess_spec(self.export)
        self.max_pixels = int(max_pixels)
        self.session = load_onnx_session(os.path.join(export_dir, "model.onnx"), threads)
        self.input_name = self.export["input"]["name"]
        self.pictures = ItemPictures(self.index, self.max_pixels)

    def health(self) -> Dict[str, Any]:
        """What ``GET /health`` answers."""
        info = self.index.info
        return {
            "status": "ok",
            "size": len(self.index),
            "dimension": self.index.dim,
            "metric": self.index.metric,
            "kind": self.index.kind,
            "run": info.get("run_dir"),
            "params_file": info.get("params_file"),
            "params_sha256": info.get("params_sha256"),
            "dataset": info.get("dataset"),
            "split": info.get("split"),
            "input": {"size": self.spec["size"], "channels": self.spec["channels"]},
        }

    def embed(self, image_bytes: bytes) -> np.ndarray:
        """``(1, D)`` embedding of one picture file's bytes."""
        x = preprocess(image_bytes, self.spec, self.max_pixels)
        return self.session.run(None, {self.input_name: x})[0]

    def search(self, image_bytes: bytes, k: int, name: Any) -> Dict[str, Any]:
        """The ``k`` nearest items of one picture, as a line of ``search --json``."""
        from .results import result_rows

        dist, ids = self.index.search_embeddings(self.embed(image_bytes), k)
        return result_rows(self.index, dist, ids, [name])[0]


def _read_export(export_dir: str) -> Dict[str, Any]:
    path = os.path.join(export_dir, "export.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{export_dir} is not an export: it has no export.json") from None
    except ValueError as e:
        raise ValueError(f"{path} is corrupt: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != "onnx":
        raise ValueError(f"{export_dir} is not an ONNX export (gluon-triplet export --format onnx)")
    return doc
