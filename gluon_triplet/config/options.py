"""How a :class:`~gluon_triplet.config.Config` field is declared, and the named values
the fields refer to: presets, kvstores, the automatic epoch count."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

__all__ = [
    "AUTO_EPOCHS",
    "AUTO_MIN_SAMPLES",
    "DEFAULT_LR",
    "DIST_KVSTORES",
    "KVSTORES",
    "MAX_AUTO_EPOCHS",
    "PRESETS",
    "SHORT_RUN_EPOCHS",
    "SHORT_RUN_LR",
    "SHORT_RUN_WARMUP",
    "option",
    "recorded",
    "resolve_epochs",
    "resolve_schedule",
    "short_run",
]

#: Named bundles of settings, applied under a JSON config and explicit flags.
PRESETS = {
    # Offline random triplets, the Dense 256 ReLU -> Dense 128 ReLU MLP, SGD.
    "reference": {
        "model": "mlp",
        "hidden": (256,),
        "output": "relu",
        "normalize": False,
        "margin": 1.0,
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "batch_size": 1024,
        "epochs": 10,
        "miner": "offline",
        "distance": "squared",
        "lr_schedule": "constant",
        "warmup_epochs": 0.0,
    },
    "default": {},
}

#: MXNet's kvstore types; ``dist_*`` ones run under a ps-lite job (``gluon-triplet launch``).
KVSTORES = ("device", "local", "nccl", "dist_sync", "dist_device_sync", "dist_async")
DIST_KVSTORES = tuple(k for k in KVSTORES if k.startswith("dist_"))

#: ``epochs`` left automatic: at least AUTO_EPOCHS passes, and enough to show the net
#: AUTO_MIN_SAMPLES samples when the training set is small, up to MAX_AUTO_EPOCHS.
AUTO_EPOCHS = 10
AUTO_MIN_SAMPLES = 30_000
MAX_AUTO_EPOCHS = 30


def resolve_epochs(epochs: Optional[int], samples: int) -> int:
    """``epochs`` as given, or the automatic count for a training set of ``samples``:
    ``min(MAX_AUTO_EPOCHS, max(AUTO_EPOCHS, ceil(AUTO_MIN_SAMPLES / samples)))``."""
    if epochs is not None:
        return int(epochs)
    needed = math.ceil(AUTO_MIN_SAMPLES / max(1, int(samples)))
    return min(MAX_AUTO_EPOCHS, max(AUTO_EPOCHS, needed))


#: ``lr`` and ``warmup_epochs`` left automatic: DEFAULT_LR without a warm-up, except in
#: runs of at most SHORT_RUN_EPOCHS epochs, which ramp up to SHORT_RUN_LR over the first
#: SHORT_RUN_WARMUP epoch (ahead on Fashion-MNIST's and the panel's validation splits
#: after 3 and 5 epochs, not clearly after 10; docs/defaults.md has the figures).
DEFAULT_LR = 1e-3
SHORT_RUN_EPOCHS = 5
SHORT_RUN_LR = 2e-3
SHORT_RUN_WARMUP = 0.3


def short_run(epochs: int) -> bool:
    """Whether a run of ``epochs`` epochs gets the short run's automatic rate and warm-up."""
    return 0 < epochs <= SHORT_RUN_EPOCHS


def resolve_schedule(
    lr: Optional[float], warmup_epochs: Optional[float], epochs: int
) -> Tuple[float, float]:
    """``(lr, warmup_epochs)`` as given, or automatic for a run of ``epochs`` epochs
    (each resolved on its own, so ``--lr`` alone keeps the short run's warm-up)."""
    short = short_run(epochs)
    if lr is None:
        lr = SHORT_RUN_LR if short else DEFAULT_LR
    if warmup_epochs is None:
        warmup_epochs = SHORT_RUN_WARMUP if short else 0.0
    return float(lr), float(warmup_epochs)


def option(
    default: Any,
    help: str,
    group: str,
    *,
    choices: Optional[Tuple[str, ...]] = None,
    flag: Optional[Tuple[str, ...]] = None,
    metavar: Optional[str] = None,
    shown_default: Optional[str] = None,
) -> Any:
    """A :class:`~gluon_triplet.config.Config` field that is also the ``train`` option
    ``--<name with dashes>`` (plus the spellings in ``flag``, e.g. ``-P``): ``help`` then
    ``(default: ...)``, the default or ``shown_default``; ``choices`` are also what
    ``Config.validate`` accepts; ``group`` is the help section."""
    given = {"choices": choices, "flag": flag, "metavar": metavar, "shown_default": shown_default}
    metadata: Dict[str, Any] = {"help": help, "group": group}
    metadata.update((key, value) for key, value in given.items() if value is not None)
    return dataclasses.field(default=default, metadata=metadata)


def recorded(default: Any, help: str) -> Any:
    """A :class:`~gluon_triplet.config.Config` field a run resolves and records in
    ``config.json``, with no command-line option (a JSON config may set it)."""
    return dataclasses.field(default=default, metadata={"help": help, "recorded": True})
