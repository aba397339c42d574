"""Gluon model-zoo nets (ResNet, MobileNet, ...) as backbones with an embedding head."""

from __future__ import annotations

import numpy as np
from mxnet import gluon, nd

from .architectures import BACKBONES
from .mlp import normalized, output_layer

__all__ = ["BackboneEmbedding", "load_backbone_params"]


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
            self.head = output_layer(embedding_size, output)

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
        return normalized(F, self.head(self.features(x)), self.normalize)


def _zoo_net(name, pretrained):
    from mxnet.gluon.model_zoo import vision

    if not pretrained:
        return vision.get_model(name)
    try:
        return vision.get_model(name, pretrained=True)
    except Exception as e:  # offline: requests' ConnectionError; a bad file: a hash error
        from ..resources import short_reason

        raise ValueError(
            f"--pretrained: Gluon could not fetch the ImageNet weights of {name} "
            f"({short_reason(e)}); run once with network access (they are cached in "
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
