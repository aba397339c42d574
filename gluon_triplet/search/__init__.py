"""Using an embedding: a faiss nearest-neighbour index of a run's embeddings."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".index": ("Index", "metric_for_distance"),
    },
)

if TYPE_CHECKING:
    from .index import Index, metric_for_distance
