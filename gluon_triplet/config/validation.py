"""The checks of a :class:`~gluon_triplet.config.Config`: each raises a
:class:`~gluon_triplet.errors.ConfigError` naming the first invalid value."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..nets.architectures import check_architecture
from .options import AUTO_EPOCHS, KVSTORES

if TYPE_CHECKING:
    from .settings import Config

__all__ = ["validate"]

#: field -> its least valid value (a None value is not checked).
AT_LEAST = {
    "embedding_size": 1,
    "batch_size": 1,
    "eval_batch_size": 1,
    "log_every": 1,
    "eval_every": 0,
    "epochs": 0,
    "projector_samples": -1,
    "projector_every": 0,
    "max_data_bytes": 1,
    "seed": 0,
    "triplets_per_class": 1,
    "pk_classes": 2,
    "pk_samples": 2,
    "momentum": 0,
    "weight_decay": 0,
    "warmup_epochs": 0,
    "max_memory": 0,
    "max_pixels": 1,
    "workers": 0,
}
#: What the least value of some fields means, said in the message.
_NOTES = {
    "eval_every": " (0: the test split after the last epoch only)",
    "projector_samples": " (-1: all, 0: none)",
    "pk_classes": " (anchors need a negative)",
    "pk_samples": " (anchors need a positive)",
    "max_memory": " (GiB)",
}
#: Fields that must be > 0, and fields in [0, 1).
POSITIVE = ("lr", "margin", "init_scale")
FRACTIONS = ("ema_decay", "val_fraction")
#: Fields holding layer widths or a shape: each >= 1 and at most MXNet's C int.
_WIDTHS = ("embedding_size", "hidden", "input_shape")
_MAX_WIDTH = 2**31 - 1
#: Pairs of choices that do not go together, and why.
_CONFLICTS = (
    ("miner", "offline", "distance", ("euclidean", "cosine"),
     "distance applies to online miners; offline triplets use squared L2"),
    ("soft_margin", True, "distance", ("cosine",),
     "soft_margin compares Euclidean distances; not distance cosine"),
    ("miner", "distance-weighted", "distance", ("cosine",),
     "miner distance-weighted samples by Euclidean distance; not cosine"),
)  # fmt: skip


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` naming the first invalid value of ``config``."""
    fields = dataclasses.fields(config)
    for f in fields:
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            flag = f.name.replace("_", "-")
            raise ConfigError(f"{f.name} (--{flag}) must be a finite number, got {value}")
    for name, least in AT_LEAST.items():
        value = getattr(config, name)
        if value is not None and value < least:
            raise ConfigError(f"{name} must be >= {least}{_NOTES.get(name, '')}, got {value}")
    for name in POSITIVE:
        if getattr(config, name) is not None and not getattr(config, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(config, name)}")
    for name in FRACTIONS:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if config.eval_samples < 0 or config.eval_samples == 1:
        raise ConfigError(
            f"eval_samples must be 0 (the whole split) or >= 2, got {config.eval_samples}"
        )
    _check_widths(config)
    least = AUTO_EPOCHS if config.epochs is None else config.epochs
    if least > 0 and config.warmup_epochs is not None and config.warmup_epochs >= least:
        raise ConfigError(f"warmup_epochs ({config.warmup_epochs:g}) must be < epochs ({least})")
    choices = {f.name: f.metadata["choices"] for f in fields if "choices" in f.metadata}
    for name, valid in {**choices, "kvstore": KVSTORES}.items():
        if getattr(config, name) not in valid:
            raise ConfigError(
                f"{name} must be one of {', '.join(valid)}; got {getattr(config, name)!r}"
            )
    for key, value, other, refused, message in _CONFLICTS:
        if getattr(config, key) == value and getattr(config, other) in refused:
            raise ConfigError(message)
    _check_data(config)
    if config.architecture is not None:
        try:
            check_architecture(config.architecture)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if config.model not in ("cnn", "convnet"):
            raise ConfigError(
                f"an architecture applies to the cnn and convnet; model is {config.model!r}"
            )


def _check_widths(config: Config) -> None:
    for name in _WIDTHS:
        value = getattr(config, name)
        widths = value if isinstance(value, tuple) else () if value is None else (value,)
        if any(w < 1 for w in widths):
            raise ConfigError(f"{name} sizes must be >= 1, got {list(widths)}")
        too_wide = [w for w in widths if w > _MAX_WIDTH]
        if too_wide:
            from ..resources import format_bytes

            raise ConfigError(
                f"{name} (--{name.replace('_', '-')}) {too_wide[0]} is too large: MXNet layers "
                f"hold at most {_MAX_WIDTH} units, and one of {too_wide[0]} units needs "
                f"{format_bytes(too_wide[0] * 4)} per input feature (float32 weights)"
            )


def _check_data(config: Config) -> None:
    """How pictures are read, and the run's folder name."""
    if config.image_size is not None:
        from ..data.decoding import parse_image_size

        try:
            parse_image_size(config.image_size)
        except ValueError as e:
            raise ConfigError(f"image_size: {e}") from None
    if config.image_channels not in (None, 1, 3):
        raise ConfigError(f"image_channels must be 1 or 3, got {config.image_channels}")
    name = config.run_name
    if name is not None and (not name or os.sep in name or name in (".", "..")):
        raise ConfigError(f"run_name must be a plain folder name, got {name!r}")
