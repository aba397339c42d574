"""Embedding networks: the MLP, the CNN, model-zoo backbones with an embedding head
(named in a registry), and their export to ONNX or MXNet's symbol format."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".model": (
            "BACKBONES",
            "MODELS",
            "BackboneEmbedding",
            "EmbeddingCNN",
            "EmbeddingMLP",
            "build_model",
            "embed",
            "model_from_config",
        ),
        ".export": ("EXPORT_FORMATS", "export_model", "load_onnx_session"),
        ".preprocess": ("preprocess", "preprocess_spec"),
    },
)

if TYPE_CHECKING:
    from .export import EXPORT_FORMATS, export_model, load_onnx_session
    from .model import (
        BACKBONES,
        MODELS,
        BackboneEmbedding,
        EmbeddingCNN,
        EmbeddingMLP,
        build_model,
        embed,
        model_from_config,
    )
    from .preprocess import preprocess, preprocess_spec
