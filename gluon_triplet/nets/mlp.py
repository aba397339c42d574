"""The reference embedding net: a multi-layer perceptron on flattened samples."""

from __future__ import annotations

from typing import Sequence

from mxnet import gluon

__all__ = ["EmbeddingMLP", "normalized", "output_layer"]


class EmbeddingMLP(gluon.HybridBlock):
    """Multi-layer perceptron that maps flattened samples to embeddings.

    The default is the reference net: Dense 256 ReLU -> Dense 128 ReLU.

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden ReLU layers.
    embedding_size : int
        Width of the output layer.
    output : {"relu", "linear"}
        Activation of the output layer.
    normalize : bool
        L2-normalise each embedding (rows on the unit sphere).

    Inputs: ``(B, ...)`` float32, flattened by the first Dense. Outputs: ``(B, embedding_size)``.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (256,),
        embedding_size: int = 128,
        output: str = "relu",
        normalize: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.normalize = normalize
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            for width in hidden:
                self.body.add(gluon.nn.Dense(int(width), activation="relu"))
            self.body.add(output_layer(embedding_size, output))

    def hybrid_forward(self, F, x):
        return normalized(F, self.body(x), self.normalize)


def output_layer(embedding_size: int, output: str) -> gluon.nn.Dense:
    """The embedding layer of every net: ``Dense(embedding_size)``, ``output`` "relu" or
    "linear"."""
    if output not in ("relu", "linear"):
        raise ValueError(f"output must be 'relu' or 'linear', got {output!r}")
    return gluon.nn.Dense(int(embedding_size), activation="relu" if output == "relu" else None)


def normalized(F, emb, normalize: bool):
    """``emb`` L2-normalised per row when ``normalize`` (eps keeps a zero row finite)."""
    return F.L2Normalization(emb, mode="instance", eps=1e-10) if normalize else emb
