"""Embedding networks: the MLP, the CNN, model-zoo backbones with an embedding head
(named architectures, resolved once per run), and their export to ONNX or MXNet's symbol format."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".architectures": ("ARCHITECTURES", "BACKBONES", "cnn_architecture"),
        ".mlp": ("EmbeddingMLP",),
        ".cnn": ("EmbeddingCNN",),
        ".backbones": ("BackboneEmbedding",),
        ".zoo": ("MODELS", "build_model", "model_from_config", "resolve_architecture"),
        ".embed": ("embed",),
        ".export": ("EXPORT_FORMATS", "export_model", "load_onnx_session"),
        ".preprocess": ("preprocess", "preprocess_spec"),
    },
)

if TYPE_CHECKING:
    from .architectures import ARCHITECTURES, BACKBONES, cnn_architecture
    from .backbones import BackboneEmbedding
    from .cnn import EmbeddingCNN
    from .embed import embed
    from .export import EXPORT_FORMATS, export_model, load_onnx_session
    from .mlp import EmbeddingMLP
    from .preprocess import preprocess, preprocess_spec
    from .zoo import MODELS, build_model, model_from_config, resolve_architecture
