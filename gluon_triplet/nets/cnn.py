"""The convolutional embedding net (its sizes for a picture: nets/architectures.py)."""

from __future__ import annotations

import functools
from typing import Sequence

from mxnet import gluon, nd

from .architectures import check_architecture
from .mlp import normalized, output_layer

__all__ = ["EmbeddingCNN"]


class EmbeddingCNN(gluon.HybridBlock):
    """Small convolutional net that maps images to embeddings.

    Each entry of ``channels`` is a 5x5 convolution with stride 2 and padding 2 followed
    by ReLU (each halves the height and width, rounding up), then the feature map is
    flattened, goes through the optional ``hidden`` ReLU Dense layers and a
    Dense(embedding_size). The default is the reference convnet: conv 32 -> conv 64 ->
    Dense 128 (28x28 input: 14x14x32, 7x7x64, 3136 features).

    Parameters
    ----------
    embedding_size : int
        Width of the output layer.
    channels : sequence of int
        Output channels of the strided convolutions (at least one).
    output : {"relu", "linear"}
        Activation of the output layer.
    normalize : bool
        L2-normalise each embedding (rows on the unit sphere).
    hidden : sequence of int
        Widths of ReLU Dense layers between the flattened features and the output;
        none by default.
    batch_norm : bool
        Put ``BatchNorm`` between each convolution (then without bias) and its ReLU.
    batch_norm_from : int
        With ``batch_norm``: the first convolution (1-based) that gets BatchNorm.
    block : {"strided", "pooled"}
        ``strided``: each convolution is 5x5 with stride 2. ``pooled``: 3x3 with stride 1
        followed by 2x2 max-pooling (rounding up).
    pool : {"flatten", "avg"}
        ``flatten`` feeds every position of the last feature map to the Dense layer;
        ``avg`` global-average-pools it first (any image size, a fixed feature width).
    pool_first : bool
        ``pooled`` blocks only: conv -> pool -> BatchNorm -> ReLU.

    Inputs: ``(B, H, W)`` or ``(B, C, H, W)`` float32 (a 3-D NDArray gets ``C = 1`` in
    :meth:`forward`, outside the graph; symbolic input must be 4-D).
    Outputs: ``(B, embedding_size)``.
    """

    def __init__(
        self,
        embedding_size: int = 128,
        channels: Sequence[int] = (32, 64),
        output: str = "relu",
        normalize: bool = False,
        hidden: Sequence[int] = (),
        batch_norm: bool = False,
        pool: str = "flatten",
        block: str = "strided",
        batch_norm_from: int = 1,
        pool_first: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output not in ("relu", "linear"):
            raise ValueError(f"output must be 'relu' or 'linear', got {output!r}")
        arch = dict(channels=tuple(channels), batch_norm=batch_norm, pool=pool, block=block)
        check_architecture(dict(arch, batch_norm_from=batch_norm_from, pool_first=pool_first))
        self.normalize = normalize
        kernel, stride = (5, 2) if block == "strided" else (3, 1)
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            for index, width in enumerate(channels, start=1):
                normed = batch_norm and index >= int(batch_norm_from)
                conv = functools.partial(
                    gluon.nn.Conv2D, int(width), kernel, strides=stride, padding=kernel // 2
                )

                if pool_first:
                    self.body.add(
                        conv(use_bias=not normed), gluon.nn.MaxPool2D(2, 2, ceil_mode=True)
                    )
                    if normed:
                        self.body.add(gluon.nn.BatchNorm())
                    self.body.add(gluon.nn.Activation("relu"))
                    continue
                if normed:
                    # BatchNorm's shift makes the convolution's bias redundant.
                    self.body.add(
                        conv(use_bias=False), gluon.nn.BatchNorm(), gluon.nn.Activation("relu")
                    )
                else:
                    self.body.add(conv(activation="relu"))
                if block == "pooled":
                    # Rounding up keeps the border rows, as the strided convolution does.
                    self.body.add(gluon.nn.MaxPool2D(2, 2, ceil_mode=True))
            if pool == "avg":
                # Any input size gives the same feature width: one value per channel.
                self.body.add(gluon.nn.GlobalAvgPool2D())
            self.body.add(gluon.nn.Flatten())
            for width in hidden:
                self.body.add(gluon.nn.Dense(int(width), activation="relu"))
            self.body.add(output_layer(embedding_size, output))

    @staticmethod
    def prepare_input(x):
        """``(N, H, W)`` numpy images as ``(N, 1, H, W)``, the layout the graph expects.

        For callers that gather rows inside a larger hybridized graph (the trainer),
        where :meth:`forward` cannot add the channel axis per batch.
        """
        return x[:, None] if getattr(x, "ndim", 0) == 3 else x

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):
            if x.ndim == 3:
                x = x.expand_dims(axis=1)
            elif x.ndim != 4:
                raise ValueError(
                    f"EmbeddingCNN expects (B, H, W) or (B, C, H, W) input, got {x.shape}"
                )
        return super().forward(x, *args)

    def hybrid_forward(self, F, x):
        return normalized(F, self.body(x), self.normalize)
