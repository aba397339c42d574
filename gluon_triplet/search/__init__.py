"""Using an embedding: a faiss nearest-neighbour index of a run's embeddings, and the web
service that searches it with pictures (``gluon-triplet serve``)."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".index": ("Index", "metric_for_distance"),
        ".serve": ("build_app", "create_app"),
        ".service": ("SearchService", "ensure_export"),
    },
)

if TYPE_CHECKING:
    from .index import Index, metric_for_distance
    from .serve import build_app, create_app
    from .service import SearchService, ensure_export
