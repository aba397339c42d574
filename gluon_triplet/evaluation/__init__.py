"""How good an embedding is: strict triplet accuracy, leave-one-out and query-vs-gallery
retrieval (P@1, R@k, MAP@R) and clustering scores (NMI, AMI)."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".clustering": ("ami", "clustering_metrics", "nmi"),
        ".metrics": ("evaluate_embeddings", "strict_triplet_accuracy", "triplet_distances"),
        ".retrieval": (
            "gallery_retrieval_metrics",
            "per_class_precision_at_1",
            "retrieval_metrics",
        ),
    },
)

if TYPE_CHECKING:
    from .clustering import ami, clustering_metrics, nmi
    from .metrics import evaluate_embeddings, strict_triplet_accuracy, triplet_distances
    from .retrieval import (
        gallery_retrieval_metrics,
        per_class_precision_at_1,
        retrieval_metrics,
    )
