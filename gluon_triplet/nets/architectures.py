"""The named architectures ``--model`` takes, and the net each names for a sample shape.

A run resolves its ``model`` once, before anything is built: ``auto`` becomes a name,
and a CNN name becomes an *architecture*, the exact constructor arguments of
:class:`~gluon_triplet.nets.cnn.EmbeddingCNN` (block, channels, BatchNorm, pooling).
``config.json`` records both, so ``embed``, ``evaluate``, ``export`` and ``--resume``
rebuild the net that trained, whatever the defaults become later. Run directories written
before the architecture was recorded are read with :func:`legacy_cnn_architecture`.

Nothing here imports MXNet: a run directory can be read without it.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

__all__ = [
    "ARCHITECTURES",
    "ARCHITECTURE_KEYS",
    "BACKBONES",
    "CONV_BLOCKS",
    "POOLED_CHANNELS",
    "check_architecture",
    "cnn_architecture",
    "is_image",
    "legacy_cnn_architecture",
    "resolve_model_name",
]

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

#: ``--model`` names and what each builds.
ARCHITECTURES: Dict[str, str] = {
    "auto": "cnn for pictures (H x W samples, H, W >= 8), mlp for anything else",
    "mlp": "Dense 256 -> embedding on flattened samples (the reference net; --hidden)",
    "cnn": "the default for pictures, sized for them: up to 32 px three 3x3 convolutions "
    "with 2x2 max-pooling, above 5x5 stride-2 convolutions, with BatchNorm",
    "convnet": "the reference convnet: 5x5 stride-2 convolutions 32 -> 64 (more above "
    "32 px), no BatchNorm",
    **{name: "Gluon model-zoo backbone with an embedding head" for name in BACKBONES},
}

#: How :class:`EmbeddingCNN` halves its feature maps: 5x5 stride-2 convolutions or 3x3
#: convolutions each followed by 2x2 max-pooling.
CONV_BLOCKS = ("strided", "pooled")

#: Widths of the ``cnn`` up to 32 pixels: three pooled 3x3 convolutions (28 -> 14 -> 7 -> 4).
POOLED_CHANNELS = (16, 32, 128)

#: The :class:`EmbeddingCNN` arguments an architecture holds.
ARCHITECTURE_KEYS = ("batch_norm", "batch_norm_from", "block", "channels", "pool", "pool_first")


def check_architecture(arch: Mapping[str, Any]) -> None:
    """Raise ValueError naming what is wrong in an architecture (missing keys take
    :class:`EmbeddingCNN`'s defaults, but ``channels`` is required)."""
    unknown = sorted(set(arch) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise ValueError(
            f"unknown architecture key(s): {', '.join(unknown)}; valid keys: "
            f"{', '.join(ARCHITECTURE_KEYS)}"
        )
    channels, block = arch.get("channels"), arch.get("block", "strided")
    if not (
        isinstance(channels, (list, tuple)) and channels and all(_is_int(c, 1) for c in channels)
    ):
        raise ValueError(f"architecture channels must be one or more widths >= 1, got {channels!r}")
    if block not in CONV_BLOCKS:
        raise ValueError(
            f"architecture block must be one of {', '.join(CONV_BLOCKS)}, got {block!r}"
        )
    if arch.get("pool", "flatten") not in ("flatten", "avg"):
        raise ValueError(f"architecture pool must be flatten or avg, got {arch['pool']!r}")
    for key in ("batch_norm", "pool_first"):
        if not isinstance(arch.get(key, False), bool):
            raise ValueError(f"architecture {key} must be true or false, got {arch[key]!r}")
    start = arch.get("batch_norm_from", 1)
    if not _is_int(start, 1):
        raise ValueError(f"architecture batch_norm_from must be an integer >= 1, got {start!r}")
    if arch.get("pool_first") and block != "pooled":
        raise ValueError(f"architecture pool_first applies to pooled blocks, not {block!r} ones")


def _is_int(value: Any, least: int) -> bool:
    return (
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= least
    )


def is_image(shape: Sequence[int]) -> bool:
    """``(H, W)`` or ``(C, H, W)`` with ``H, W >= 8``."""
    return len(shape) in (2, 3) and min(int(s) for s in shape[-2:]) >= 8


def resolve_model_name(name: str, sample_shape: Optional[Sequence[int]]) -> str:
    """The architecture ``name`` stands for, given the shape of one sample.

    ``"auto"`` is ``"cnn"`` for images and ``"mlp"`` for anything else; other names pass
    through once checked against the samples.

    Raises
    ------
    ValueError
        An unknown name (the message lists the valid ones), ``auto`` without a shape, a
        CNN or backbone for samples that are not images, or a backbone for images with
        other than 1 or 3 channels.
    """
    if name not in ARCHITECTURES:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(n for n in ARCHITECTURES)}"
        )
    if sample_shape is None:  # the caller knows the model (e.g. from saved parameters)
        if name == "auto":
            raise ValueError("model 'auto' needs the shape of a sample to choose a net")
        return name
    shape = tuple(int(s) for s in sample_shape)
    image = is_image(shape)
    if name == "auto":
        return "cnn" if image else "mlp"
    if name != "mlp" and not image:
        raise ValueError(
            f"model {name!r} needs image samples shaped (H, W) or (C, H, W) with H, W >= 8; "
            f"the data's samples are shaped {shape}; use --model mlp"
        )
    if name in BACKBONES and len(shape) == 3 and shape[0] not in (1, 3):
        raise ValueError(f"model {name!r} takes grey or RGB images, not {shape[0]} channels")
    return name


def _side(sample_shape: Sequence[int]) -> int:
    return min(int(s) for s in tuple(sample_shape)[-2:])


def _strided_channels(side: int) -> Dict[str, Any]:
    """The reference convnet's widths: 32 -> 64 up to 32 px; above, 128 then 256 until
    the map is at most 8 px, globally average-pooled."""
    if side <= 32:
        return {"channels": (32, 64), "pool": "flatten"}
    channels = [32, 64]
    side = -(-side // 4)
    while side > 8 and len(channels) < 6:
        channels.append(min(128 * 2 ** (len(channels) - 2), 256))
        side = -(-side // 2)
    return {"channels": tuple(channels), "pool": "avg"}


def cnn_architecture(name: str, sample_shape: Sequence[int]) -> Dict[str, Any]:
    """The :class:`EmbeddingCNN` arguments of architecture ``name`` (``"cnn"`` or
    ``"convnet"``) for images of ``sample_shape``.

    ``cnn`` up to 32 px: pooled blocks of :data:`POOLED_CHANNELS`, BatchNorm on the last
    convolution, flattened; above 32 px: the convnet's strided blocks with BatchNorm on
    every convolution. ``convnet``: strided blocks (:func:`_strided_channels`), no
    BatchNorm. How these were chosen: docs/defaults.md.

    Returns
    -------
    dict
        ``block``, ``channels``, ``pool``, ``batch_norm``, ``batch_norm_from``.
    """
    side = _side(sample_shape)
    if name == "convnet":
        return {"block": "strided", **_strided_channels(side), "batch_norm": False}
    if name != "cnn":
        raise ValueError(f"{name!r} is not a CNN architecture (cnn, convnet)")
    if side <= 32:
        channels = {"channels": POOLED_CHANNELS, "pool": "flatten"}
        return {"block": "pooled", **channels, "batch_norm": True, "batch_norm_from": 3}
    return {"block": "strided", **_strided_channels(side), "batch_norm": True, "batch_norm_from": 1}


def legacy_cnn_architecture(
    recorded: Mapping[str, Any], sample_shape: Sequence[int]
) -> Dict[str, Any]:
    """The CNN a run recorded before architectures were: from its ``conv_block``,
    ``channels``, ``batch_norm``, ``batch_norm_from`` and ``pool_first`` settings, with the
    rules of that time (a missing ``conv_block`` is ``strided``, a missing ``batch_norm``
    is none: runs from before those settings)."""
    side = _side(sample_shape)
    block = recorded.get("conv_block") or "strided"
    if block == "auto":
        block = "pooled" if side <= 32 else "strided"
    sized = _strided_channels(side) if block == "strided" else _legacy_pooled(side)
    channels: Tuple[int, ...] = tuple(recorded.get("channels") or sized["channels"])
    chosen, start = recorded.get("batch_norm", False), recorded.get("batch_norm_from")
    if chosen is None:  # the automatic choice: the pooled CNN's last convolution, else none
        chosen, start = (True, start or len(channels)) if block == "pooled" else (False, 1)
    args: Dict[str, Any] = {
        "block": block,
        "channels": channels,
        "pool": sized["pool"],
        "batch_norm": bool(chosen),
        "batch_norm_from": int(start or 1),
    }
    if recorded.get("pool_first"):
        args["pool_first"] = True
    return args


def _legacy_pooled(side: int) -> Dict[str, Any]:
    if side <= 32:
        return {"channels": POOLED_CHANNELS, "pool": "flatten"}
    return {"channels": _strided_channels(side)["channels"], "pool": "avg"}
