"""Embedding networks and batched inference."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mxnet import gluon, init, nd

__all__ = [
    "MODELS",
    "EmbeddingCNN",
    "EmbeddingMLP",
    "build_model",
    "embed",
    "model_from_config",
    "resolve_model_name",
]


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
        if output not in ("relu", "linear"):
            raise ValueError(f"output must be 'relu' or 'linear', got {output!r}")
        self.normalize = normalize
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            for width in hidden:
                self.body.add(gluon.nn.Dense(int(width), activation="relu"))
            self.body.add(
                gluon.nn.Dense(int(embedding_size), activation="relu" if output == "relu" else None)
            )

    def hybrid_forward(self, F, x):
        emb = self.body(x)
        if self.normalize:
            # eps keeps an all-zero ReLU output finite instead of NaN.
            emb = F.L2Normalization(emb, mode="instance", eps=1e-10)
        return emb


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
        Batch statistics while training, running averages when embedding.

    Inputs: ``(B, H, W)`` or ``(B, C, H, W)`` float32. A 3-D NDArray gets its channel
    axis (``C = 1``) in :meth:`forward`, before the (possibly hybridized) graph, which
    always sees ``(B, C, H, W)``: a cached graph has no shapes to branch on. Symbolic
    input (export, or use inside another hybridized block) must be 4-D.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output not in ("relu", "linear"):
            raise ValueError(f"output must be 'relu' or 'linear', got {output!r}")
        if not len(channels):
            raise ValueError("channels must list at least one convolution width")
        self.normalize = normalize
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            for width in channels:
                if batch_norm:
                    # BatchNorm's shift makes the convolution's bias redundant.
                    self.body.add(
                        gluon.nn.Conv2D(
                            int(width), kernel_size=5, strides=2, padding=2, use_bias=False
                        ),
                        gluon.nn.BatchNorm(),
                        gluon.nn.Activation("relu"),
                    )
                else:
                    self.body.add(
                        gluon.nn.Conv2D(
                            int(width), kernel_size=5, strides=2, padding=2, activation="relu"
                        )
                    )
            self.body.add(gluon.nn.Flatten())
            for width in hidden:
                self.body.add(gluon.nn.Dense(int(width), activation="relu"))
            self.body.add(
                gluon.nn.Dense(int(embedding_size), activation="relu" if output == "relu" else None)
            )

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
        emb = self.body(x)
        if self.normalize:
            # eps keeps an all-zero ReLU output finite instead of NaN.
            emb = F.L2Normalization(emb, mode="instance", eps=1e-10)
        return emb


MODELS = {"mlp": EmbeddingMLP, "cnn": EmbeddingCNN}


def build_model(name="mlp", init_scale=0.1, ctx=None, **kwargs):
    """Create and initialise a registered embedding net.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`.
    init_scale : float
        Weights drawn from ``Uniform(init_scale)`` (the reference net uses 0.1).
    ctx : mx.Context or list of mx.Context, optional
        Where to allocate the parameters (default: CPU).
    **kwargs
        Passed to the model's constructor.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    net = MODELS[name](**kwargs)
    net.initialize(init.Uniform(init_scale), ctx=ctx)
    return net


def resolve_model_name(name, sample_shape):
    """The registered model ``name`` stands for, given the shape of one sample.

    ``"auto"`` is ``"cnn"`` for images (``(H, W)`` or ``(C, H, W)`` samples with
    ``H, W >= 8``) and ``"mlp"`` for anything else; other names pass through.

    Raises
    ------
    ValueError
        ``"cnn"`` asked for samples that are not images.
    """
    if sample_shape is None:  # the caller knows the model (e.g. from saved parameters)
        if name == "auto":
            raise ValueError("model 'auto' needs the shape of a sample to choose a net")
        return name
    shape = tuple(int(s) for s in sample_shape)
    image = len(shape) in (2, 3) and min(shape[-2:]) >= 8
    if name == "auto":
        return "cnn" if image else "mlp"
    if name == "cnn" and not image:
        raise ValueError(
            f"model 'cnn' needs image samples shaped (H, W) or (C, H, W) with H, W >= 8; "
            f"the data's samples are shaped {shape}; use --model mlp"
        )
    return name


def model_from_config(config, sample_shape, ctx=None):
    """Build and initialise the net a :class:`~gluon_triplet.config.Config` describes.

    Parameters
    ----------
    config : Config
        Uses ``model`` (``"auto"`` resolved by :func:`resolve_model_name`), ``hidden``
        (``None``: the model's default), ``embedding_size``, ``output``, ``normalize``
        and ``init_scale``.
    sample_shape : tuple of int or None
        Shape of one input sample, e.g. ``(28, 28)``; ``None`` when ``config.model`` is
        not ``"auto"``.
    ctx : mx.Context or list of mx.Context, optional

    Returns
    -------
    net : gluon.HybridBlock
    name : str
        The resolved model name.
    """
    name = resolve_model_name(config.model, sample_shape)
    kwargs = {
        "embedding_size": config.embedding_size,
        "output": config.output,
        "normalize": config.normalize,
    }
    if config.hidden is not None:
        kwargs["hidden"] = tuple(config.hidden)
    # Only the CNN has these; a default value leaves the constructor call as it was.
    cnn_only = {}
    if getattr(config, "channels", None) is not None:
        cnn_only["channels"] = tuple(config.channels)
    if getattr(config, "batch_norm", False):
        cnn_only["batch_norm"] = True
    if cnn_only and name != "cnn":
        raise ValueError(
            f"{' and '.join(sorted(cnn_only))} apply to the cnn; model {config.model!r} "
            f"is {name!r} for these samples"
        )
    kwargs.update(cnn_only)
    return build_model(name, init_scale=config.init_scale, ctx=ctx, **kwargs), name


def embed(net, x, batch_size=4096, ctx=None):
    """Embed samples in batches.

    Parameters
    ----------
    net : gluon.Block
    x : (N, ...) numpy array or NDArray
    batch_size : int
    ctx : mx.Context, optional
        Where to run (default: the context of the net's first parameter).

    Returns
    -------
    (N, D) float32 numpy array
    """
    if ctx is None:
        ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    n = len(x)
    if n == 0:
        raise ValueError("embed: x is empty")
    out = []
    for start in range(0, n, batch_size):
        batch = x[start : start + batch_size]
        if not isinstance(batch, nd.NDArray):
            batch = nd.array(np.asarray(batch, dtype=np.float32), ctx=ctx)
        out.append(net(batch.as_in_context(ctx)))
    # One sync at the end rather than one per batch.
    return nd.concat(*out, dim=0).asnumpy()
