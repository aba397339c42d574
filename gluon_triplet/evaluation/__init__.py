"""How good an embedding is: strict triplet accuracy, leave-one-out and query-vs-gallery
retrieval (P@1, R@k, MAP@R) and clustering scores (NMI, AMI)."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".metrics": (
            "ami",
            "clustering_metrics",
            "evaluate_embeddings",
            "gallery_retrieval_metrics",
            "nmi",
            "per_class_precision_at_1",
            "retrieval_metrics",
            "strict_triplet_accuracy",
            "triplet_distances",
        ),
    },
)

if TYPE_CHECKING:
    from .metrics import (
        ami,
        clustering_metrics,
        evaluate_embeddings,
        gallery_retrieval_metrics,
        nmi,
        per_class_precision_at_1,
        retrieval_metrics,
        strict_triplet_accuracy,
        triplet_distances,
    )
