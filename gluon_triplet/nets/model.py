"""Embedding networks and batched inference."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from mxnet import gluon, init, nd

__all__ = [
    "BACKBONES",
    "CONV_BLOCKS",
    "MODELS",
    "POOLED_CHANNELS",
    "BackboneEmbedding",
    "EmbeddingCNN",
    "EmbeddingMLP",
    "build_model",
    "cnn_architecture",
    "cnn_arguments",
    "embed",
    "load_backbone_params",
    "model_from_config",
    "resolve_batch_norm",
    "resolve_conv_block",
    "resolve_model_name",
]


#: How :class:`EmbeddingCNN` halves its feature maps: 5x5 stride-2 convolutions (the
#: reference) or 3x3 convolutions each followed by 2x2 max-pooling (the config's ``auto``
#: picks one by image size, :func:`resolve_conv_block`).
CONV_BLOCKS = ("strided", "pooled")


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
    batch_norm_from : int
        With ``batch_norm``: the first convolution (1-based) that gets BatchNorm; the
        ones before keep their bias and no normalisation. ``2`` skips the full-resolution
        first convolution, whose map is most of BatchNorm's cost.
    block : {"strided", "pooled"}
        ``strided`` (the reference): each convolution is 5x5 with stride 2. ``pooled``: each
        is 3x3 with stride 1 followed by 2x2 max-pooling (rounding up), which halves the
        map as well at about a third of a 5x5 convolution's multiply-adds per output,
        so the same budget buys more layers or channels.
    pool : {"flatten", "avg"}
        ``flatten`` (the reference) feeds every position of the last feature map to the
        Dense layer; ``avg`` global-average-pools it first, so the net takes any image
        size and the Dense layer does not grow with it (:func:`cnn_architecture` picks it
        for images larger than 32 pixels).
    pool_first : bool
        ``pooled`` blocks only: max-pool each convolution's output before its BatchNorm
        and ReLU (conv -> pool -> BatchNorm -> ReLU), so that they work on a quarter of
        the map. Without BatchNorm the net computes the same function (ReLU commutes with
        max-pooling); with it, BatchNorm normalises the pooled values.

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
        pool: str = "flatten",
        block: str = "strided",
        batch_norm_from: int = 1,
        pool_first: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output not in ("relu", "linear"):
            raise ValueError(f"output must be 'relu' or 'linear', got {output!r}")
        if int(batch_norm_from) < 1:
            raise ValueError(f"batch_norm_from must be >= 1, got {batch_norm_from}")
        if not len(channels):
            raise ValueError("channels must list at least one convolution width")
        if pool not in ("flatten", "avg"):
            raise ValueError(f"pool must be 'flatten' or 'avg', got {pool!r}")
        if block not in CONV_BLOCKS:
            raise ValueError(f"block must be one of {', '.join(CONV_BLOCKS)}, got {block!r}")
        if pool_first and block != "pooled":
            raise ValueError(f"pool_first applies to pooled blocks, not {block!r} ones")
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
                    # Max-pooling before BatchNorm and ReLU: they then touch a quarter of
                    # the map (ReLU commutes with max; BatchNorm normalises pooled values).
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


#: Gluon model-zoo nets usable as backbones: their ``features`` end in global pooling, so
#: any input of at least 32 x 32 pixels gives one feature vector.
BACKBONES = (
    "resnet18_v1",
    "resnet34_v1",
    "resnet50_v1",
    "resnet101_v1",
    "resnet152_v1",
    "resnet18_v2",
    "resnet34_v2",
    "resnet50_v2",
    "resnet101_v2",
    "resnet152_v2",
    "mobilenet1.0",
    "mobilenet0.75",
    "mobilenet0.5",
    "mobilenet0.25",
    "mobilenetv2_1.0",
    "mobilenetv2_0.75",
    "mobilenetv2_0.5",
    "mobilenetv2_0.25",
)
# ImageNet statistics the zoo's pretrained weights expect, applied to [0, 1] pixels.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneEmbedding(gluon.HybridBlock):
    """A Gluon model-zoo net's ``features`` with a new Dense embedding head.

    As MXNet's ``example/gluon/embedding_learning`` does with ResNet-50: the classifier
    (``output``) is dropped and ``Dense(embedding_size)`` maps the pooled features to the
    embedding. Inputs are standardised with the ImageNet mean and deviation first, as the
    pretrained weights expect.

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES`.
    embedding_size : int
    output : {"relu", "linear"}
    normalize : bool
        L2-normalise each embedding.
    pretrained : bool
        Start from Gluon's ImageNet weights (downloaded by Gluon into
        ``$MXNET_HOME/models`` on first use).

    Inputs: ``(B, 3, H, W)`` float32 in [0, 1]; ``(B, H, W)`` and ``(B, 1, H, W)`` grey
    NDArrays are repeated to three channels in :meth:`forward` (and by
    :meth:`prepare_input` for numpy arrays). Outputs: ``(B, embedding_size)``.
    """

    def __init__(
        self,
        name: str = "resnet18_v1",
        embedding_size: int = 128,
        output: str = "linear",
        normalize: bool = True,
        pretrained: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
        if output not in ("relu", "linear"):
            raise ValueError(f"output must be 'relu' or 'linear', got {output!r}")
        self.backbone = name
        self.normalize = normalize
        zoo = _zoo_net(name, pretrained)
        with self.name_scope():
            self.mean = self.params.get_constant(
                "mean", nd.array(_IMAGENET_MEAN).reshape(1, 3, 1, 1)
            )
            self.std = self.params.get_constant("std", nd.array(_IMAGENET_STD).reshape(1, 3, 1, 1))
            self.features = zoo.features
            self.head = gluon.nn.Dense(
                int(embedding_size), activation="relu" if output == "relu" else None, flatten=True
            )

    @staticmethod
    def prepare_input(x):
        """Numpy ``(N, H, W)`` / ``(N, 1, H, W)`` grey images as ``(N, 3, H, W)``."""
        if getattr(x, "ndim", 0) == 3:
            x = x[:, None]
        if getattr(x, "ndim", 0) == 4 and x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        return x

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):
            if x.ndim == 3:
                x = x.expand_dims(axis=1)
            if x.ndim != 4:
                raise ValueError(f"{self.backbone} expects (B, C, H, W) images, got {x.shape}")
            if x.shape[1] == 1:
                x = x.repeat(3, axis=1)
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, mean, std):
        x = F.broadcast_div(F.broadcast_sub(x, mean), std)
        emb = self.head(self.features(x))
        if self.normalize:
            emb = F.L2Normalization(emb, mode="instance", eps=1e-10)
        return emb


def _zoo_net(name, pretrained):
    from mxnet.gluon.model_zoo import vision

    if not pretrained:
        return vision.get_model(name)
    try:
        return vision.get_model(name, pretrained=True)
    except Exception as e:  # offline: requests' ConnectionError; a bad file: a hash error
        from ..data.datasets import _short_reason

        raise ValueError(
            f"--pretrained: Gluon could not fetch the ImageNet weights of {name} "
            f"({_short_reason(e)}); run once with network access (they are cached in "
            "$MXNET_HOME/models) or pass --pretrained-params FILE"
        ) from None


def load_backbone_params(net, path, ctx=None):
    """Load local weights into a :class:`BackboneEmbedding`'s ``features``.

    ``path`` may hold a whole model-zoo net (``get_model(name).save_parameters``), a
    gluon-triplet run's parameters of the same backbone, or the features alone; the
    embedding head keeps its initialisation.

    Raises
    ------
    ValueError
        The file is unreadable or lacks (or mis-shapes) a parameter of the features.
    """
    import mxnet as mx

    try:
        arrays = nd.load(path)
    except (mx.base.MXNetError, OSError) as e:
        from ..resources import error_line

        raise ValueError(
            f"--pretrained-params {path}: not an MXNet parameter file ({error_line(e)})"
        ) from None
    if not isinstance(arrays, dict):
        raise ValueError(f"--pretrained-params {path}: holds unnamed arrays, not parameters")
    params = net.features._collect_params_with_prefix()
    for prefix in ("features.", ""):
        found = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        missing = sorted(set(params) - set(found))
        if not missing:
            break
    else:
        raise ValueError(
            f"--pretrained-params {path}: not the weights of {net.backbone} ({len(missing)} of "
            f"its {len(params)} feature parameters missing, e.g. {missing[0]!r})"
        )
    ctx = ctx or [mx.cpu()]
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    for key, param in params.items():
        if tuple(param.shape) != tuple(found[key].shape) and 0 not in param.shape:
            raise ValueError(
                f"--pretrained-params {path}: {key} has shape {found[key].shape}, "
                f"{net.backbone} needs {param.shape}"
            )
        param._load_init(found[key], ctx)


MODELS = {"mlp": EmbeddingMLP, "cnn": EmbeddingCNN}


def build_model(name="mlp", init_scale=0.1, ctx=None, pretrained_params=None, **kwargs):
    """Create and initialise a registered embedding net or a model-zoo backbone.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS` or a name in :data:`BACKBONES`.
    init_scale : float
        Weights drawn from ``Uniform(init_scale)`` (the reference net uses 0.1).
    ctx : mx.Context or list of mx.Context, optional
        Where to allocate the parameters (default: CPU).
    pretrained_params : str, optional
        Backbones only: local weights for the features (see :func:`load_backbone_params`).
    **kwargs
        Passed to the model's constructor (backbones also take ``pretrained``).
    """
    if name in BACKBONES:
        net = BackboneEmbedding(name, **kwargs)
        if pretrained_params:
            load_backbone_params(net, pretrained_params, ctx)
        # He init (fan-in) keeps activations from vanishing through deep and depthwise
        # convolutions; pretrained or loaded weights are kept.
        for param in net.collect_params().values():
            if param._data is None and param._deferred_init == ():
                param.initialize(default_init=init.MSRAPrelu("in", 0.0), ctx=ctx)
        return net
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}, auto, or a "
            f"Gluon model-zoo backbone: {', '.join(BACKBONES)}"
        )
    if pretrained_params:
        raise ValueError(f"--pretrained-params applies to model-zoo backbones, not {name!r}")
    net = MODELS[name](**kwargs)
    net.initialize(init.Uniform(init_scale), ctx=ctx)
    return net


def _is_image(shape):
    """``(H, W)`` or ``(C, H, W)`` with ``H, W >= 8``."""
    return len(shape) in (2, 3) and min(shape[-2:]) >= 8


def resolve_model_name(name, sample_shape):
    """The registered model ``name`` stands for, given the shape of one sample.

    ``"auto"`` is ``"cnn"`` for images (``(H, W)`` or ``(C, H, W)`` samples with
    ``H, W >= 8``, any ``C``) and ``"mlp"`` for anything else; other names pass through.

    Raises
    ------
    ValueError
        ``"cnn"`` or a backbone asked for samples that are not images, or a backbone for
        images with other than 1 or 3 channels.
    """
    if sample_shape is None:  # the caller knows the model (e.g. from saved parameters)
        if name == "auto":
            raise ValueError("model 'auto' needs the shape of a sample to choose a net")
        return name
    shape = tuple(int(s) for s in sample_shape)
    image = _is_image(shape)
    if name == "auto":
        return "cnn" if image else "mlp"
    if (name == "cnn" or name in BACKBONES) and not image:
        raise ValueError(
            f"model {name!r} needs image samples shaped (H, W) or (C, H, W) with H, W >= 8; "
            f"the data's samples are shaped {shape}; use --model mlp"
        )
    if name in BACKBONES and len(shape) == 3 and shape[0] not in (1, 3):
        raise ValueError(f"model {name!r} takes grey or RGB images, not {shape[0]} channels")
    return name


#: Widths of the pooled CNN up to 32 pixels: three 3x3 convolutions, each followed by 2x2
#: max-pooling (28 -> 14 -> 7 -> 4). The last one is the widest because its 7x7 map makes
#: width cheap; 128 rather than 64 gained P@1 on every Fashion-MNIST validation split and
#: still costs less training CPU per sample than the reference convnet (docs/defaults.md).
POOLED_CHANNELS = (16, 32, 128)


def cnn_architecture(sample_shape, block="strided"):
    """Constructor arguments of :class:`EmbeddingCNN` for images of ``sample_shape``.

    Up to 32 pixels a side: the reference convnet (conv 32 -> conv 64, flattened), so
    MNIST-sized runs keep their measured architecture; with ``block="pooled"`` three
    pooled 3x3 convolutions of :data:`POOLED_CHANNELS` instead. Larger images get more
    convolutions (128, then 256 channels) until the map is at most 8 pixels a side, and
    global average pooling before the embedding layer.

    Returns
    -------
    dict
        ``{}`` (the defaults), ``{"channels": (...)}`` or ``{"channels": (...), "pool": "avg"}``.
    """
    if sample_shape is None or not _is_image(tuple(sample_shape)):
        return {}
    side = min(int(s) for s in tuple(sample_shape)[-2:])
    if side <= 32:
        return {"channels": POOLED_CHANNELS} if block == "pooled" else {}
    channels = [32, 64]
    side = -(-side // 4)
    while side > 8 and len(channels) < 6:
        channels.append(min(128 * 2 ** (len(channels) - 2), 256))
        side = -(-side // 2)
    return {"channels": tuple(channels), "pool": "avg"}


def resolve_conv_block(block, sample_shape):
    """The CNN block ``"auto"`` stands for: ``"pooled"`` for images up to 32 pixels a
    side (it won on validation at the same cost, docs/defaults.md), ``"strided"`` for
    larger ones (where the pooled net's stride-1 convolutions at full resolution would
    cost several times more and were not measured); other names pass through."""
    if block != "auto":
        return block
    if sample_shape is not None and _is_image(tuple(sample_shape)):
        if min(int(s) for s in tuple(sample_shape)[-2:]) <= 32:
            return "pooled"
    return "strided"


def resolve_batch_norm(config, block, depth):
    """``(batch_norm, batch_norm_from)`` of the CNN a config describes.

    ``config.batch_norm`` None (automatic) is BatchNorm on the pooled CNN's last
    convolution only (where its map is smallest: most of the gain for little of the cost,
    docs/defaults.md) and none for the strided one; True is every convolution from
    ``config.batch_norm_from`` (default 1) on, False is none.

    Parameters
    ----------
    config : Config
        Uses ``batch_norm`` and ``batch_norm_from``.
    block : {"strided", "pooled"}
        The resolved block (:func:`resolve_conv_block`).
    depth : int
        The number of convolutions.
    """
    chosen = getattr(config, "batch_norm", None)
    start = getattr(config, "batch_norm_from", None)
    if chosen is None:
        if block != "pooled":
            return False, 1
        return True, int(start) if start is not None else depth
    return bool(chosen), int(start) if start is not None else 1


def cnn_arguments(config, sample_shape):
    """The :class:`EmbeddingCNN` arguments a config resolves to for ``sample_shape``.

    ``block`` (``"auto"`` resolved, :func:`resolve_conv_block`), ``channels`` (the
    config's, else :func:`cnn_architecture`'s, else the reference's), ``pool`` where the
    size calls for it, and ``batch_norm`` / ``batch_norm_from`` (automatic resolved,
    :func:`resolve_batch_norm`). :func:`model_from_config` builds the CNN from them, and
    a run records them, so that a config rebuilds the net it trained.

    Returns
    -------
    dict
    """
    block = resolve_conv_block(getattr(config, "conv_block", "strided"), sample_shape)
    args = {"block": block, "channels": (32, 64), **cnn_architecture(sample_shape, block)}
    if getattr(config, "channels", None) is not None:
        args["channels"] = tuple(config.channels)
    args["batch_norm"], args["batch_norm_from"] = resolve_batch_norm(
        config, block, len(args["channels"])
    )
    if getattr(config, "pool_first", False):
        args["pool_first"] = True
    return args


def model_from_config(config, sample_shape, ctx=None):
    """Build and initialise the net a :class:`~gluon_triplet.config.Config` describes.

    Parameters
    ----------
    config : Config
        Uses ``model`` (``"auto"`` resolved by :func:`resolve_model_name`; a name in
        :data:`BACKBONES` builds :class:`BackboneEmbedding`), ``hidden`` (``None``: the
        model's default), ``embedding_size``, ``output``, ``normalize``, ``init_scale``,
        ``input_shape`` (when ``sample_shape`` is None), ``pretrained`` and
        ``pretrained_params``.
    sample_shape : tuple of int or None
        Shape of one input sample, e.g. ``(28, 28)``; ``None``: ``config.input_shape``.
    ctx : mx.Context or list of mx.Context, optional

    Returns
    -------
    net : gluon.HybridBlock
    name : str
        The resolved model name.
    """
    if sample_shape is None and getattr(config, "input_shape", None) is not None:
        sample_shape = tuple(config.input_shape)
    name = resolve_model_name(config.model, sample_shape)
    kwargs = {
        "embedding_size": config.embedding_size,
        "output": config.output,
        "normalize": config.normalize,
    }
    pretrained = getattr(config, "pretrained", False)
    params_file = getattr(config, "pretrained_params", None)
    if name in BACKBONES:
        if pretrained and params_file:
            raise ValueError("--pretrained and --pretrained-params exclude each other")
        kwargs["pretrained"] = pretrained
        net = build_model(name, ctx=ctx, pretrained_params=params_file, **kwargs)
        return net, name
    if pretrained or params_file:
        flag = "--pretrained" if pretrained else "--pretrained-params"
        raise ValueError(
            f"{flag} applies to Gluon model-zoo backbones ({', '.join(BACKBONES[:3])}, ...), "
            f"not to model {name!r}"
        )
    if config.hidden is not None:
        kwargs["hidden"] = tuple(config.hidden)
    # Settings only the CNN has, named away from their defaults: an error for another
    # model (the CNN itself is built from cnn_arguments).
    cnn_only = [
        key
        for key, given in (
            ("channels", getattr(config, "channels", None) is not None),
            ("batch_norm", getattr(config, "batch_norm", None) is True),
            ("pool_first", bool(getattr(config, "pool_first", False))),
            ("block", getattr(config, "conv_block", "strided") == "pooled"),
        )
        if given
    ]
    if cnn_only and name != "cnn":
        raise ValueError(
            f"{' and '.join(sorted(cnn_only))} apply to the cnn; model {config.model!r} "
            f"is {name!r} for these samples"
        )
    if name == "cnn":
        kwargs.update(cnn_arguments(config, sample_shape))
    return build_model(name, init_scale=config.init_scale, ctx=ctx, **kwargs), name


_EMBED_BATCH_BYTES = 32 << 20


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
    # Large pictures: cap a batch's input at 32 MiB of float32, which bounds the
    # convolutions' activations too (28x28 samples keep batches of up to ~10,000).
    sample = int(np.prod(x.shape[1:])) * 4
    batch_size = max(1, min(batch_size, _EMBED_BATCH_BYTES // max(sample, 1)))
    out = []
    for start in range(0, n, batch_size):
        batch = x[start : start + batch_size]
        if not isinstance(batch, nd.NDArray):
            batch = nd.array(np.asarray(batch, dtype=np.float32), ctx=ctx)
        out.append(net(batch.as_in_context(ctx)))
        if len(out) >= 2:
            # At most two batches in flight: their inputs are the memory embed holds.
            out[-2].wait_to_read()
    # The last batch syncs at the end.
    return nd.concat(*out, dim=0).asnumpy()
