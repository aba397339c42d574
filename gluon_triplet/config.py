"""The one configuration object of a run: CLI/JSON -> Config -> constructors."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, fields
from typing import Optional, Tuple

__all__ = ["PRESETS", "Config", "ConfigError", "atomic_save", "atomic_write_text"]

# Named bundles of settings, applied under a JSON config and explicit flags.
PRESETS = {
    # The reference recipe: balanced random triplets drawn offline, the Dense 256 ReLU ->
    # Dense 128 ReLU MLP (Uniform(0.1) init), SGD 0.05, batch 1024, margin 1, 10 epochs.
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
    },
    "default": {},
}


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key."""


@dataclass
class Config:
    """Every setting of a training run.

    The defaults are the recipe chosen by measurement on validation splits carved from the
    training data (``bench/quality.py --split val``): semi-hard online mining in P x K
    batches, L2-normalised linear embeddings with margin 0.2, Adam with a cosine schedule,
    and a small CNN for image data (the MLP otherwise). ``PRESETS["reference"]`` holds the
    reference recipe (offline random triplets, the Dense 256 -> 128 ReLU MLP, SGD).
    """

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    # Pictures (folder:, rec:, image:): None = chosen from the data, recorded resolved.
    image_size: Optional[str] = None
    image_channels: Optional[int] = None
    upscale: bool = True
    strict: bool = False
    workers: Optional[int] = None
    model: str = "auto"
    # Shape of one input sample, recorded by a run so the net can be rebuilt without data.
    input_shape: Optional[Tuple[int, ...]] = None
    pretrained: bool = False
    pretrained_params: Optional[str] = None
    hidden: Optional[Tuple[int, ...]] = None
    embedding_size: int = 128
    output: str = "linear"
    normalize: bool = True
    init_scale: float = 0.1
    margin: float = 0.2
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 1024
    epochs: int = 10
    triplets_per_class: Optional[int] = None
    miner: str = "semi-hard"
    pk_classes: Optional[int] = None
    pk_samples: int = 16
    distance: str = "squared"
    lr_schedule: str = "cosine"
    # Training-time augmentation on the data path: none, digits or photos (augment.py).
    augment: str = "none"
    warmup_epochs: float = 0.0
    soft_margin: bool = False
    channels: Optional[Tuple[int, ...]] = None
    batch_norm: bool = False
    ctx: str = "auto"
    kvstore: str = "device"
    seed: int = 0
    logdir: str = "logs"
    run_name: Optional[str] = None
    projector_samples: int = 1000
    projector_every: int = 0
    plots: bool = True
    eval_batch_size: int = 4096
    log_every: int = 50

    def __post_init__(self):
        self.validate()

    def validate(self):
        positive_ints = (
            "embedding_size",
            "batch_size",
            "eval_batch_size",
            "log_every",
        )
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.projector_samples < 0:
            raise ConfigError(f"projector_samples must be >= 0, got {self.projector_samples}")
        if self.projector_every < 0:
            raise ConfigError(f"projector_every must be >= 0, got {self.projector_every}")
        if self.triplets_per_class is not None and self.triplets_per_class < 1:
            raise ConfigError(f"triplets_per_class must be >= 1, got {self.triplets_per_class}")
        if self.pk_classes is not None and self.pk_classes < 2:
            raise ConfigError(
                f"pk_classes must be >= 2 (anchors need a negative), got {self.pk_classes}"
            )
        if self.input_shape is not None and any(d < 1 for d in self.input_shape):
            raise ConfigError(f"input_shape sizes must be >= 1, got {list(self.input_shape)}")
        if self.hidden is not None and any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if self.channels is not None and (not self.channels or any(c < 1 for c in self.channels)):
            raise ConfigError(f"channels must be one or more widths >= 1, got {self.channels}")
        if (self.channels is not None or self.batch_norm) and self.model == "mlp":
            raise ConfigError("channels and batch_norm apply to the cnn; model is 'mlp'")
        for name in ("lr", "margin", "init_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.epochs > 0 and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warmup_epochs ({self.warmup_epochs:g}) must be < epochs ({self.epochs})"
            )
        if self.pk_samples < 2:
            raise ConfigError(
                f"pk_samples must be >= 2 (anchors need a positive), got {self.pk_samples}"
            )
        choices = {
            "miner": ("offline", "batch-hard", "semi-hard", "batch-all", "distance-weighted"),
            "distance": ("squared", "euclidean", "cosine"),
            "lr_schedule": ("constant", "cosine"),
            "augment": ("none", "digits", "photos"),
            # MXNet's kvstore types; dist_* run under a ps-lite job (gluon-triplet launch).
            "kvstore": ("device", "local", "nccl", "dist_sync", "dist_device_sync", "dist_async"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"{name} must be one of {', '.join(valid)}; got {getattr(self, name)!r}"
                )
        if self.miner == "offline" and self.distance != "squared":
            raise ConfigError("distance applies to online miners; offline triplets use squared L2")
        if self.miner == "distance-weighted" and self.distance == "cosine":
            raise ConfigError("miner distance-weighted samples by Euclidean distance; not cosine")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.output not in ("relu", "linear"):
            raise ConfigError(f"output must be 'relu' or 'linear', got {self.output!r}")
        if self.image_size is not None:
            from .images import parse_image_size

            try:
                parse_image_size(self.image_size)
            except ValueError as e:
                raise ConfigError(f"image_size: {e}") from None
        if self.image_channels not in (None, 1, 3):
            raise ConfigError(f"image_channels must be 1 or 3, got {self.image_channels}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.run_name is not None and (
            not self.run_name or os.sep in self.run_name or self.run_name in (".", "..")
        ):
            raise ConfigError(f"run_name must be a plain folder name, got {self.run_name!r}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        d["channels"] = None if self.channels is None else list(self.channels)
        d["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d):
        """Build a Config from a dict, naming any unknown key or wrongly typed value."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        defaults = {f.name: f.default for f in fields(cls)}
        unknown = sorted(set(d) - set(defaults))
        if unknown:
            raise ConfigError(
                f"unknown config key(s): {', '.join(unknown)}; valid keys: {', '.join(defaults)}"
            )
        return cls(**{key: _coerce(key, value, defaults[key]) for key, value in d.items()})

    def save(self, path):
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path):
        """Read a JSON config file; every problem is a ConfigError naming the file."""
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
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def _coerce(key, value, default):
    """Check ``value`` against the type of the key's default."""
    if key in ("data_dir", "run_name", "image_size", "pretrained_params"):
        if value is None or isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} must be a string or null, got {value!r}")
    if key in ("triplets_per_class", "pk_classes", "image_channels", "workers"):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ConfigError(f"config key {key!r} must be an integer or null, got {value!r}")
    if key in ("hidden", "channels", "input_shape"):
        if value is None:
            return None
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            return tuple(value)
        raise ConfigError(f"config key {key!r} must be a list of integers or null, got {value!r}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    expected = type(default).__name__
    raise ConfigError(f"config key {key!r} must be of type {expected}, got {value!r}")


def atomic_save(path, save):
    """Call ``save(tmp)`` on a temporary name beside ``path``, then rename it to ``path``.

    Readers (and a later ``--resume``) see the old file or the new one, never a torn one;
    on an error the temporary file is removed and ``path`` is left as it was. The
    temporary name ends like ``path`` (``.tmp-<name>``), so savers that append a missing
    suffix (``np.save``) write exactly that name.
    """
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{base}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text):
    """Write a file so that readers see the old or the new content, never a torn one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        # mkstemp makes the file private (0600); the run's files are as readable as the
        # parameter files beside them.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
