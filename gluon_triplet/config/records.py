"""A :class:`~gluon_triplet.config.Config` as JSON: written to and read from
``config.json``, with every problem a :class:`~gluon_triplet.errors.ConfigError`."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Type, Union

from ..errors import ConfigError
from ..io import atomic_write_text

if TYPE_CHECKING:
    from .settings import Config

__all__ = ["REMOVED_KEYS", "from_dict", "load_recorded", "save", "to_dict"]

PathLike = Union[str, "os.PathLike[str]"]

#: Settings of earlier versions, and what took their place.
REMOVED_KEYS = {
    key: "the CNN is chosen by --model (cnn or convnet) and sized for the pictures; "
    "a run records its exact layers as 'architecture'"
    for key in ("channels", "batch_norm", "batch_norm_from", "pool_first", "conv_block")
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


#: A field's annotation -> (accepts a JSON value, converts it, what the message says).
_TYPES: Dict[str, Tuple[Callable[[Any], bool], Callable[[Any], Any], str]] = {
    "bool": (lambda v: isinstance(v, bool), bool, "of type bool"),
    "int": (_is_int, int, "of type int"),
    "float": (_is_number, float, "of type float"),
    "str": (lambda v: isinstance(v, str), str, "of type str"),
    "Optional[str]": (lambda v: isinstance(v, str), str, "a string or null"),
    "Optional[int]": (_is_int, int, "an integer or null"),
    "Optional[float]": (_is_number, float, "a number or null"),
    "Optional[Dict[str, Any]]": (lambda v: isinstance(v, dict), dict, "an object or null"),
    "Optional[Tuple[int, ...]]": (
        lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) for x in v),
        tuple,
        "a list of integers or null",
    ),
}


def to_dict(config: Config) -> Dict[str, Any]:
    """The JSON object of ``config`` (tuples as lists)."""
    d = dataclasses.asdict(config)
    for key in ("hidden", "input_shape"):
        d[key] = None if d[key] is None else list(d[key])
    if config.architecture is not None:
        d["architecture"] = {**d["architecture"], "channels": list(d["architecture"]["channels"])}
    return d


def from_dict(cls: Type[Config], d: Any) -> Config:
    """Build a Config from a JSON object, naming any unknown key or wrongly typed value."""
    if not isinstance(d, dict):
        raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
    removed = sorted(set(d) & set(REMOVED_KEYS))
    if removed:
        raise ConfigError(
            f"config key {removed[0]!r} is no longer a setting: {REMOVED_KEYS[removed[0]]}"
        )
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(types))
    if unknown:
        raise ConfigError(
            f"unknown config key(s): {', '.join(unknown)}; valid keys: {', '.join(types)}"
        )
    values: Dict[str, Any] = {}
    for key, value in d.items():
        accepts, convert, expected = _TYPES[types[key]]
        if value is None and types[key].startswith("Optional"):
            values[key] = None
        elif accepts(value):
            values[key] = convert(value)
        else:
            raise ConfigError(f"config key {key!r} must be {expected}, got {value!r}")
    return cls(**values)


def save(config: Config, path: PathLike) -> None:
    """Write ``config`` to the JSON file ``path`` (atomically)."""
    atomic_write_text(os.fspath(path), json.dumps(to_dict(config), indent=2) + "\n")


def load_recorded(
    cls: Type[Config],
    path: PathLike,
    upgrade: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
) -> Tuple[Config, Dict[str, Any]]:
    """The Config of a JSON file and the object as the file holds it, from one read;
    ``upgrade`` turns an object an earlier version wrote into today's keys.

    Raises
    ------
    ConfigError
        Naming the file: missing, unreadable, not JSON, or not a valid config.
    """
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    try:
        if upgrade is not None and isinstance(d, dict):
            return from_dict(cls, upgrade(d)), d
        return from_dict(cls, d), d
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
