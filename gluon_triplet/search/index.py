"""A nearest-neighbour index over embeddings, backed by faiss, saved as one directory.

::

    index = Index.build(net, x_train, y_train, class_names=names)   # embeds with the net
    distances, ids = index.search(x_query, k=10)                     # (Q, k), (Q, k)
    index.save("fashion-index")
    index = Index.load("fashion-index", net=net)

The kinds (``kind=``: flat, hnsw, ivf) and their parameters are in :mod:`.building`.
Metrics (``metric=``) follow the run's distance: ``"squared_l2"`` for ``squared`` and
``euclidean`` runs (the same ranking; distances reported are squared L2, the quantity
``gluon.loss.TripletLoss`` and :mod:`gluon_triplet.evaluation.metrics` use); ``"cosine"``
for ``cosine`` runs: vectors are L2-normalised when added and queried, and distances reported are
``1 - cos``.

The directory (:mod:`.store`) holds the faiss index, ids, labels, class names, paths and
a manifest with every file's SHA-256; :meth:`Index.load` checks all of it.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import IndexFileError
from .building import (
    DEFAULT_PARAMS,
    as_vectors,
    faiss_index,
    ids_array,
    labels_array,
    metric_for_distance,
    normalized,
    paths_list,
    positive,
    resolve_params,
)
from .store import FORMAT, INDEX_KINDS, METRICS, load_index_dir, save_index_dir

__all__ = [
    "DEFAULT_PARAMS",
    "INDEX_KINDS",
    "METRICS",
    "Index",
    "IndexFileError",
    "metric_for_distance",
]


# The manifest's own keys; the others are the index's provenance, ``Index.info``.
_MANIFEST_KEYS = {"format", "metric", "embedding_size", "count", "index", "files"}
_MANIFEST_KEYS |= {"labels", "class_names", "paths"}


class Index:
    """Embeddings of labelled items, searchable by nearest neighbours.

    Build one with :meth:`build` (from a net and samples) or :meth:`from_embeddings`, or
    read one with :meth:`load`. When the index has a ``net``, :meth:`search` and
    :meth:`add` take *samples* and embed them with it; without one they take ``(N, D)``
    embeddings. :meth:`search_embeddings` and :meth:`add_embeddings` always take
    embeddings.

    Attributes
    ----------
    net : gluon.Block or None
        The embedding net, if known.
    metric : str
        ``"squared_l2"`` or ``"cosine"``.
    kind : str
        ``"flat"``, ``"hnsw"`` or ``"ivf"``.
    params : dict
        The index's parameters (see :data:`DEFAULT_PARAMS`).
    ids : (N,) int64
        The id of each row (by default its position in the data it was built from).
    labels : (N,) int or str, or None
    class_names : list of str, or None
        Name of each integer label value.
    paths : list of (str or None), or None
        Source file of each row, when known.
    info : dict
        Provenance written into the manifest (``run_dir``, ``params_file``,
        ``params_sha256``, ``dataset``, ``split``, ...).
    """

    def __init__(
        self,
        faiss_index,
        *,
        metric: str,
        kind: str,
        params: Dict[str, int],
        ids: np.ndarray,
        labels: Optional[np.ndarray] = None,
        class_names: Optional[Sequence[str]] = None,
        paths: Optional[Sequence[Optional[str]]] = None,
        info: Optional[Dict[str, Any]] = None,
        net=None,
        batch_size: int = 4096,
    ):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
        self._index = faiss_index
        self.metric = metric
        self.kind = kind
        self.params = dict(params)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = labels
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.paths = None if paths is None else list(paths)
        self.info = dict(info or {})
        self.net = net
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------------ building

    @classmethod
    def from_embeddings(
        cls,
        emb,
        labels=None,
        class_names: Optional[Sequence[str]] = None,
        paths: Optional[Sequence[Optional[str]]] = None,
        kind: str = "flat",
        metric: str = "squared_l2",
        ids=None,
        info: Optional[Dict[str, Any]] = None,
        net=None,
        **params,
    ) -> Index:
        """An index over given embeddings.

        Parameters
        ----------
        emb : (N, D) float array
        labels : (N,) int or str, optional
        class_names : sequence of str, optional
            Names of the integer label values (``class_names[label]``).
        paths : sequence of N str or None, optional
            Source file of each row.
        kind : {"flat", "hnsw", "ivf"}
        metric : {"squared_l2", "cosine"}
        ids : (N,) int, optional
            Id of each row (default ``0 .. N-1``).
        info : dict, optional
            Provenance for the manifest (see :attr:`info`).
        net : gluon.Block, optional
            Kept for :meth:`search` and :meth:`add` on samples.
        **params
            Parameters of the kind; see :data:`DEFAULT_PARAMS`.
        """
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
        x = as_vectors(emb, None, "embeddings")
        n = len(x)
        params = resolve_params(kind, n, params)
        labels = labels_array(labels, n)
        paths = paths_list(paths, n)
        ids = ids_array(ids, n)
        if metric == "cosine":
            x = normalized(x)
        start = time.perf_counter()
        index = faiss_index(x, kind, params)
        info = dict(info or {})
        info["build_seconds"] = round(time.perf_counter() - start, 3)
        out = cls(
            index,
            metric=metric,
            kind=kind,
            params=params,
            ids=ids,
            labels=labels,
            class_names=class_names,
            paths=paths,
            info=info,
            net=net,
        )
        out._apply_search_params()
        return out

    @classmethod
    def build(cls, net, x, labels=None, batch_size: int = 4096, **kwargs) -> Index:
        """Embed samples with ``net`` (in batches) and index the embeddings.

        Parameters
        ----------
        net : gluon.Block
            ``(B, ...) -> (B, D)``.
        x : (N, ...) float32 samples
        labels, **kwargs
            As for :meth:`from_embeddings` (``class_names``, ``paths``, ``kind``, ...).
        batch_size : int
            Samples embedded at once.
        """
        from ..nets.embed import embed

        if len(x) == 0:
            raise ValueError("no samples to index")
        out = cls.from_embeddings(embed(net, x, batch_size=batch_size), labels, net=net, **kwargs)
        out.batch_size = int(batch_size)
        return out

    def set_search_params(self, **params: int) -> None:
        """Change search-time parameters without rebuilding: ``ef_search`` (HNSW),
        ``nprobe`` (IVF). Higher values find more of the true neighbours, more slowly.

        Raises
        ------
        ValueError
            A parameter this kind has no search-time setting for, or not a positive int.
        """
        tunable = {"hnsw": ("ef_search",), "ivf": ("nprobe",)}.get(self.kind, ())
        checked = {}
        for key, value in params.items():
            if key not in tunable:
                valid = ", ".join(tunable) or "none"
                raise ValueError(
                    f"{key} is not a search-time parameter of {self.kind} indexes; valid: {valid}"
                )
            checked[key] = positive(value, key)
        self.params.update(checked)
        if self.kind == "ivf":
            self.params["nprobe"] = min(self.params["nprobe"], self.params["nlist"])
        self._apply_search_params()

    def _apply_search_params(self):
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.params["ef_search"]
        elif self.kind == "ivf":
            self._index.nprobe = self.params["nprobe"]

    # ------------------------------------------------------------------------- queries

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        """Embedding size ``D``."""
        return int(self._index.d)

    def _embed(self, x):
        if self.net is None:
            return x
        from ..nets.embed import embed

        return embed(self.net, x, batch_size=self.batch_size)

    def search(self, x, k: int = 10) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed items of each query.

        Parameters
        ----------
        x : (Q, ...) samples if the index has a ``net``, else (Q, D) embeddings
        k : int, 1 <= k <= len(self)

        Returns
        -------
        distances : (Q, k) float32
            Ascending; squared L2, or ``1 - cos`` for the cosine metric.
        ids : (Q, k) int64
            :attr:`ids` of the neighbours. An approximate index that finds fewer than ``k``
            items fills the rest with id ``-1`` and distance ``inf``.
        """
        return self.search_embeddings(self._embed(x), k)

    def search_embeddings(self, emb, k: int = 10) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for ``(Q, D)`` embeddings."""
        q = as_vectors(emb, self.dim, "queries")
        if positive(k, "k") > len(self):
            raise ValueError(f"k={k} is larger than the index ({len(self)} items)")
        if self.metric == "cosine":
            q = normalized(q)
        dist, rows = self._index.search(q, int(k))
        missing = rows < 0
        ids = self.ids[np.where(missing, 0, rows)]
        ids[missing] = -1
        dist = np.maximum(dist, 0.0)  # rounding can leave -1e-7 for identical vectors
        if self.metric == "cosine":
            dist = dist / 2  # |a - b|^2 = 2 - 2 cos for unit vectors
        dist[missing] = np.inf
        return dist.astype(np.float32, copy=False), ids

    def labels_of(self, ids) -> Optional[np.ndarray]:
        """Labels of the rows with these :attr:`ids` (``-1`` ids: ``None`` entries)."""
        if self.labels is None:
            return None
        return self.labels[self._rows_of(ids)]

    def _rows_of(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if np.array_equal(self.ids, np.arange(len(self.ids))):
            return np.where(ids < 0, 0, ids)
        order = np.argsort(self.ids, kind="stable")
        pos = np.searchsorted(self.ids, np.where(ids < 0, 0, ids), sorter=order)
        return order[np.minimum(pos, len(order) - 1)]

    # -------------------------------------------------------------------------- adding

    def add(self, x, labels=None, paths=None) -> np.ndarray:
        """Add items; samples if the index has a ``net``, else ``(N, D)`` embeddings.

        Labels (and paths) must be given exactly when the index has them.

        Returns
        -------
        (N,) int64
            The ids given to the new rows (continuing after the largest id).
        """
        return self.add_embeddings(self._embed(x), labels=labels, paths=paths)

    def add_embeddings(self, emb, labels=None, paths=None) -> np.ndarray:
        """:meth:`add` for ``(N, D)`` embeddings."""
        x = as_vectors(emb, self.dim, "embeddings")
        n = len(x)
        if (labels is None) != (self.labels is None):
            has = "has" if self.labels is not None else "has no"
            raise ValueError(f"the index {has} labels: pass labels exactly when it has them")
        if (paths is None) != (self.paths is None) and self.paths is not None:
            raise ValueError("the index has source paths: pass paths for the new rows")
        labels = labels_array(labels, n)
        paths = paths_list(paths, n)
        if labels is not None and self.labels is not None:
            kinds = {labels.dtype.kind, self.labels.dtype.kind}
            if len(kinds) > 1 and not kinds <= set("biu"):
                raise ValueError(
                    f"labels are {labels.dtype} but the index's are {self.labels.dtype}"
                )
        if self.metric == "cosine":
            x = normalized(x)
        self._index.add(x)
        start = int(self.ids.max()) + 1 if len(self.ids) else 0
        new_ids = np.arange(start, start + n, dtype=np.int64)
        self.ids = np.concatenate([self.ids, new_ids])
        if labels is not None:
            self.labels = np.concatenate([self.labels, labels])
        if self.paths is not None:
            self.paths = self.paths + (paths or [None] * n)
        return new_ids

    # ---------------------------------------------------------------------- save, load

    def manifest(self) -> Dict[str, Any]:
        """What :meth:`save` writes to ``manifest.json`` (without the file checksums)."""
        doc = {
            "format": FORMAT,
            "metric": self.metric,
            "embedding_size": self.dim,
            "count": len(self),
            "index": {"kind": self.kind, "params": self.params},
            "labels": self.labels is not None,
            "class_names": self.class_names is not None,
            "paths": self.paths is not None,
        }
        for key, value in self.info.items():
            doc.setdefault(key, value)
        return doc

    def save(self, directory: str) -> None:
        """Write the index to a new directory.

        The directory must not exist (or be empty). Everything is written into a
        temporary directory beside it and renamed into place at the end, so a failure
        leaves nothing behind and nothing is overwritten.
        """
        save_index_dir(
            directory,
            self._index,
            arrays={"ids.npy": self.ids, "labels.npy": self.labels},
            listings={"class_names.json": self.class_names, "paths.json": self.paths},
            manifest=self.manifest(),
        )

    @classmethod
    def load(cls, directory: str, net=None, batch_size: int = 4096) -> Index:
        """Read an index directory written by :meth:`save`.

        Parameters
        ----------
        directory : str
        net : gluon.Block, optional
            Embeds samples for :meth:`search` and :meth:`add`; it must output the index's
            embedding size (checked on the first search).

        Raises
        ------
        IndexFileError
            The directory or a file is missing, a checksum does not match (corrupt or
            edited file), or the files disagree with each other.
        """
        stored = load_index_dir(directory)
        doc = stored.manifest
        info = {k: v for k, v in doc.items() if k not in _MANIFEST_KEYS}
        out = cls(
            stored.index,
            metric=doc["metric"],
            kind=doc["index"]["kind"],
            params=doc["index"]["params"],
            ids=stored.ids,
            labels=stored.labels,
            class_names=stored.class_names,
            paths=stored.paths,
            info=info,
            net=net,
            batch_size=batch_size,
        )
        out._apply_search_params()
        return out
