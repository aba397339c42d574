"""The named architectures (``--model``): the registry, building a net by name, and
building the net a config describes."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from mxnet import init

from .architectures import BACKBONES, cnn_architecture, resolve_model_name
from .backbones import BackboneEmbedding, load_backbone_params
from .cnn import EmbeddingCNN
from .mlp import EmbeddingMLP

__all__ = ["MODELS", "build_model", "model_from_config", "resolve_architecture"]


#: Constructors of the nets this package defines (``convnet`` is an :class:`EmbeddingCNN`
#: too; :func:`resolve_architecture` gives its arguments).
MODELS = {"mlp": EmbeddingMLP, "cnn": EmbeddingCNN, "convnet": EmbeddingCNN}


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


def resolve_architecture(
    config: Any, sample_shape: Optional[Sequence[int]]
) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The model name and CNN arguments a config stands for, resolved once.

    ``config.model`` ``auto`` becomes ``cnn`` or ``mlp`` (:func:`resolve_model_name`);
    for ``cnn`` and ``convnet`` the arguments are ``config.architecture`` when the config
    records them (a run's, or a bench recipe's), else the ones the name gives for these
    samples (:func:`cnn_architecture`). Other models have none.

    Raises
    ------
    ValueError
        An unknown or unfitting model, or an architecture recorded for a model that is
        not a CNN.
    """
    if sample_shape is None and getattr(config, "input_shape", None) is not None:
        sample_shape = tuple(config.input_shape)
    name = resolve_model_name(config.model, sample_shape)
    recorded = getattr(config, "architecture", None)
    if name not in ("cnn", "convnet"):
        if recorded:
            raise ValueError(f"an architecture applies to the cnn and convnet, not {name!r}")
        return name, None
    if recorded:
        return name, {**recorded, "channels": tuple(recorded["channels"])}
    if sample_shape is None:
        raise ValueError(f"model {name!r} needs the shape of a sample or a recorded architecture")
    return name, cnn_architecture(name, sample_shape)


def model_from_config(config: Any, sample_shape: Optional[Sequence[int]], ctx: Any = None):
    """Build and initialise the net a :class:`~gluon_triplet.config.Config` describes.

    Parameters
    ----------
    config : Config
        Uses ``model`` and ``architecture`` (:func:`resolve_architecture`), ``hidden``
        (``None``: the model's default), ``embedding_size``, ``output``, ``normalize``,
        ``init_scale``, ``input_shape`` (when ``sample_shape`` is None), ``pretrained``
        and ``pretrained_params``.
    sample_shape : tuple of int or None
        Shape of one input sample, e.g. ``(28, 28)``; ``None``: ``config.input_shape``.
    ctx : mx.Context or list of mx.Context, optional

    Returns
    -------
    net : gluon.HybridBlock
    name : str
        The resolved model name.
    """
    name, architecture = resolve_architecture(config, sample_shape)
    kwargs: Dict[str, Any] = {
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
    kwargs.update(architecture or {})
    return build_model(name, init_scale=config.init_scale, ctx=ctx, **kwargs), name
