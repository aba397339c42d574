"""An index directory on disk: ``index.faiss``, ``ids.npy``, ``labels.npy``,
``class_names.json`` and ``paths.json`` (when known), and ``manifest.json`` (the run, its
parameters' SHA-256, the dataset, metric, embedding size, index kind and parameters, and
every file's SHA-256); :func:`load_index_dir` checks that a directory is whole and
consistent (else :class:`IndexFileError`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, NamedTuple, Optional

import numpy as np

from ..errors import IndexFileError
from ..io import new_directory_parent, sha256_file
from ..optional import require
from ..resources import raise_write_error

__all__ = [
    "INDEX_KINDS",
    "MANIFEST",
    "METRICS",
    "StoredIndex",
    "load_index_dir",
    "read_manifest",
    "save_index_dir",
]

#: Index kinds :meth:`Index.build` accepts.
INDEX_KINDS = ("flat", "hnsw", "ivf")
#: Metrics an index can rank by.
METRICS = ("squared_l2", "cosine")

MANIFEST = "manifest.json"
FORMAT = 1
INDEX_FILE = "index.faiss"
_ARRAYS = ("ids.npy", "labels.npy")
_LISTINGS = ("class_names.json", "paths.json")


def _faiss():
    return require("faiss", "the nearest-neighbour index")


class StoredIndex(NamedTuple):
    """What :func:`load_index_dir` read: the faiss index, the manifest, and the contents of
    the other files (None when the directory has no such file)."""

    index: Any
    manifest: Dict[str, Any]
    ids: np.ndarray
    labels: Optional[np.ndarray]
    class_names: Optional[list]
    paths: Optional[list]


def save_index_dir(
    directory: str,
    faiss_index,
    arrays: Dict[str, Optional[np.ndarray]],
    listings: Dict[str, Optional[list]],
    manifest: Dict[str, Any],
) -> None:
    """Write a new index directory: the faiss index, ``arrays`` (``.npy``) and ``listings``
    (JSON) that are not None, and ``manifest`` with every file's SHA-256.

    The directory must not exist (or be empty). Everything is written into a temporary
    directory beside it and renamed into place at the end, so a failure leaves nothing
    behind and nothing is overwritten.
    """
    parent = new_directory_parent(directory)
    faiss = _faiss()
    writing = directory  # named in the error of a full or read-only disk
    tmp = ""
    try:
        tmp = tempfile.mkdtemp(prefix=".tmp-index-", dir=parent)
        files: dict = {}
        writing = os.path.join(directory, INDEX_FILE)
        # Through Python's file, not ndarray.tofile: its fwrite loses a small file's
        # end on a full disk without an error.
        with open(os.path.join(tmp, INDEX_FILE), "wb") as f:
            f.write(faiss.serialize_index(faiss_index).tobytes())
        files[INDEX_FILE] = None
        for name, array in arrays.items():
            if array is not None:
                writing = os.path.join(directory, name)
                np.save(os.path.join(tmp, name), array, allow_pickle=False)
                files[name] = None
        for name, value in listings.items():
            if value is not None:
                writing = os.path.join(directory, name)
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                    json.dump(value, f)
                files[name] = None
        doc = dict(manifest)
        doc["files"] = {name: sha256_file(os.path.join(tmp, name)) for name in files}
        writing = os.path.join(directory, MANIFEST)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o755)
        if os.path.isdir(directory):
            os.rmdir(directory)  # empty, checked above
        os.rename(tmp, directory)
    except BaseException as e:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise_write_error(writing, e)


def load_index_dir(directory: str) -> StoredIndex:
    """Read an index directory written by :func:`save_index_dir`, every file checked.

    Raises
    ------
    IndexFileError
        The directory or a file is missing, a checksum does not match (corrupt or
        edited file), or the files disagree with each other.
    """
    doc = read_manifest(directory)
    _check_checksums(directory, doc)
    index = _read_faiss(directory)
    arrays = {name: _read_array(directory, doc, name) for name in _ARRAYS}
    listings = {name: _read_listing(directory, doc, name) for name in _LISTINGS}
    _check_consistent(directory, doc, index, arrays, listings)
    ids = arrays["ids.npy"]
    assert ids is not None  # checked just above
    return StoredIndex(
        index,
        doc,
        ids=ids,
        labels=arrays["labels.npy"],
        class_names=listings["class_names.json"],
        paths=listings["paths.json"],
    )


def _check_checksums(directory, doc):
    for name, digest in doc["files"].items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise IndexFileError(f"{directory}: {name} is missing")
        if sha256_file(path) != digest:
            raise IndexFileError(f"{directory}: {name} is corrupt (its SHA-256 differs)")


def _read_faiss(directory):
    faiss = _faiss()
    try:
        return faiss.deserialize_index(np.fromfile(os.path.join(directory, INDEX_FILE), np.uint8))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise IndexFileError(f"{directory}: {INDEX_FILE} is not a faiss index: {first}") from None


def _read_array(directory, doc, name):
    if name not in doc["files"]:
        return None
    try:
        return np.load(os.path.join(directory, name), allow_pickle=False)
    except ValueError as e:
        raise IndexFileError(f"{directory}: {name} is unreadable: {e}") from None


def _read_listing(directory, doc, name):
    if name not in doc["files"]:
        return None
    with open(os.path.join(directory, name), encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise IndexFileError(f"{directory}: {name} is not JSON: {e}") from None


def _check_consistent(directory, doc, index, arrays, listings):
    ids, labels = arrays["ids.npy"], arrays["labels.npy"]
    paths = listings["paths.json"]
    n = int(index.ntotal)
    problems = []
    if ids is None or ids.shape != (n,):
        problems.append(f"ids.npy has {None if ids is None else ids.shape}, want ({n},)")
    if labels is not None and labels.shape != (n,):
        problems.append(f"labels.npy has shape {labels.shape}, want ({n},)")
    if paths is not None and len(paths) != n:
        problems.append(f"paths.json lists {len(paths)} paths, want {n}")
    if int(index.d) != doc["embedding_size"] or n != doc["count"]:
        problems.append(
            f"the faiss index holds {n} x {index.d}, the manifest says "
            f"{doc['count']} x {doc['embedding_size']}"
        )
    if problems:
        raise IndexFileError(f"{directory}: inconsistent index: {'; '.join(problems)}")


def read_manifest(directory: str) -> Dict[str, Any]:
    """The checked ``manifest.json`` of an index directory.

    Raises
    ------
    IndexFileError
        The directory or the manifest is missing, or the manifest is not one this
        version wrote.
    """
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise IndexFileError(f"{directory!r} is a file, not an index directory")
        raise IndexFileError(f"index directory {directory!r} does not exist")
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise IndexFileError(f"{directory!r} is not an index directory: it has no {MANIFEST}")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFileError(f"{path} is corrupt: {e}") from None
    need = {"format": int, "metric": str, "embedding_size": int, "count": int, "index": dict}
    need["files"] = dict
    bad = [k for k, t in need.items() if not isinstance(doc, dict) or not isinstance(doc.get(k), t)]
    if bad:
        raise IndexFileError(f"{path} is corrupt: missing or malformed {', '.join(bad)}")
    if doc["format"] != FORMAT:
        raise IndexFileError(
            f"{path}: index format {doc['format']} is not supported (want {FORMAT})"
        )
    if doc["metric"] not in METRICS:
        raise IndexFileError(f"{path}: unknown metric {doc['metric']!r}")
    kind = doc["index"].get("kind")
    if kind not in INDEX_KINDS or not isinstance(doc["index"].get("params"), dict):
        raise IndexFileError(f"{path}: unknown index kind {kind!r}")
    if INDEX_FILE not in doc["files"] or "ids.npy" not in doc["files"]:
        raise IndexFileError(f"{path} is corrupt: it lists no {INDEX_FILE} or ids.npy")
    return doc
