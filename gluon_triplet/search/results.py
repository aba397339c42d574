"""Search results as JSON-ready rows, one format for ``gluon-triplet search --json`` and the
``serve`` endpoint: ``{"query", "label" (when known), "neighbours": [{"id", "label",
"distance", "path"}, ...]}``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["label_text", "result_rows"]


def label_text(label: Any, class_names: Optional[Sequence[str]]) -> Any:
    """A label as shown: its class name when the data names its classes, else the value."""
    if label is None:
        return None
    from ..runs.report import class_name

    return class_name(class_names, label.item() if isinstance(label, np.generic) else label)


def result_rows(
    index: Any,
    dist: np.ndarray,
    ids: np.ndarray,
    names: Sequence[Any],
    labels: Any = None,
    class_names: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    """One row per query of an :meth:`~gluon_triplet.search.index.Index.search_embeddings`
    result.

    Parameters
    ----------
    index : Index
    dist, ids : (Q, k) arrays
        Its output.
    names : Q values
        What each row's ``"query"`` says (a position in a dataset, a file's path or name).
    labels : Q labels, optional
        The queries' labels, when known; shown by ``class_names``.
    """
    k = ids.shape[1]
    nlabels = index.labels_of(ids)
    positions = index._rows_of(ids) if index.paths else None
    rows = []
    for i, name in enumerate(names):
        neighbours = []
        for r in range(k):
            nid = int(ids[i, r])
            found = nid >= 0
            path = index.paths[positions[i, r]] if positions is not None and found else None
            label = label_text(nlabels[i, r], index.class_names) if nlabels is not None else None
            neighbours.append(
                {
                    "id": nid,
                    "label": label if found else None,
                    "distance": float(dist[i, r]) if found else None,
                    "path": path,
                }
            )
        row: Dict[str, Any] = {"query": name}
        qlabel = None if labels is None else label_text(labels[i], class_names)
        if qlabel is not None:
            row["label"] = qlabel
        row["neighbours"] = neighbours
        rows.append(row)
    return rows
