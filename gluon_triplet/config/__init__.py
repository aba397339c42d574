"""The one configuration object of a run: CLI/JSON -> :class:`Config` -> constructors.

``options`` declares fields (and presets, kvstores, the automatic epoch count),
``settings`` holds the :class:`Config` dataclass, ``validation`` its checks and
``records`` its JSON form (``config.json``)."""

from ..errors import ConfigError
from .options import (
    AUTO_EPOCHS,
    AUTO_MIN_SAMPLES,
    DEFAULT_LR,
    DIST_KVSTORES,
    KVSTORES,
    MAX_AUTO_EPOCHS,
    PRESETS,
    SHORT_RUN_EPOCHS,
    SHORT_RUN_LR,
    SHORT_RUN_WARMUP,
    option,
    recorded,
    resolve_epochs,
    resolve_schedule,
    short_run,
)
from .records import REMOVED_KEYS
from .settings import Config

__all__ = [
    "AUTO_EPOCHS",
    "AUTO_MIN_SAMPLES",
    "DEFAULT_LR",
    "DIST_KVSTORES",
    "KVSTORES",
    "MAX_AUTO_EPOCHS",
    "PRESETS",
    "REMOVED_KEYS",
    "SHORT_RUN_EPOCHS",
    "SHORT_RUN_LR",
    "SHORT_RUN_WARMUP",
    "Config",
    "ConfigError",
    "option",
    "recorded",
    "resolve_epochs",
    "resolve_schedule",
    "short_run",
]
