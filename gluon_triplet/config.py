"""The one configuration object of a run: CLI/JSON -> Config -> constructors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Optional, Tuple, Union

from .errors import ConfigError
from .io import atomic_write_text
from .nets.architectures import ARCHITECTURES, CONV_BLOCKS

__all__ = [
    "DIST_KVSTORES",
    "KVSTORES",
    "PRESETS",
    "REMOVED_KEYS",
    "Config",
    "ConfigError",
    "check_architecture",
    "resolve_epochs",
    "option",
    "recorded",
]

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
    """A :class:`Config` field with what its command-line option needs.

    The train parser (:mod:`gluon_triplet.cli.train`) is generated from these: the option
    is ``--<name with dashes>`` (plus the extra spellings in ``flag``, e.g. ``-P``), its
    help is ``help`` followed by ``(default: ...)``, the field's default unless
    ``shown_default`` says what that default means. ``choices`` are also what
    :meth:`Config.validate` accepts. ``group`` is the help section.
    """
    metadata: Dict[str, Any] = {"help": help, "group": group}
    for key, value in (
        ("choices", choices),
        ("flag", flag),
        ("metavar", metavar),
        ("shown_default", shown_default),
    ):
        if value is not None:
            metadata[key] = value
    return dataclasses.field(default=default, metadata=metadata)


def recorded(default: Any, help: str) -> Any:
    """A :class:`Config` field a run resolves and records in ``config.json``, with no
    command-line option (a JSON config may set it)."""
    return dataclasses.field(default=default, metadata={"help": help, "recorded": True})


#: Settings of earlier versions, and what took their place.
REMOVED_KEYS = {
    key: "the CNN is chosen by --model (cnn or convnet) and sized for the pictures; "
    "a run records its exact layers as 'architecture'"
    for key in ("channels", "batch_norm", "batch_norm_from", "pool_first", "conv_block")
}

_ARCHITECTURE_KEYS = {"block", "channels", "pool", "batch_norm", "batch_norm_from", "pool_first"}


def check_architecture(arch: Dict[str, Any]) -> None:
    """Raise a ConfigError naming what is wrong in a CNN architecture (see
    :func:`~gluon_triplet.nets.architectures.cnn_architecture`)."""
    unknown = sorted(set(arch) - _ARCHITECTURE_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown architecture key(s): {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(_ARCHITECTURE_KEYS))}"
        )
    channels = arch.get("channels")
    if (
        not isinstance(channels, (list, tuple))
        or not channels
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)
    ):
        raise ConfigError(
            f"architecture channels must be one or more widths >= 1, got {channels!r}"
        )
    if arch.get("block", "strided") not in CONV_BLOCKS:
        raise ConfigError(f"architecture block must be one of {', '.join(CONV_BLOCKS)}")
    if arch.get("pool", "flatten") not in ("flatten", "avg"):
        raise ConfigError("architecture pool must be flatten or avg")
    for key in ("batch_norm", "pool_first"):
        if not isinstance(arch.get(key, False), bool):
            raise ConfigError(f"architecture {key} must be true or false")
    start = arch.get("batch_norm_from", 1)
    if not isinstance(start, int) or isinstance(start, bool) or start < 1:
        raise ConfigError(f"architecture batch_norm_from must be an integer >= 1, got {start!r}")
    if arch.get("pool_first") and arch.get("block", "strided") != "pooled":
        raise ConfigError("architecture pool_first applies to pooled blocks")


#: ``epochs`` left automatic: at least this many passes over the training data ...
AUTO_EPOCHS = 10
#: ... and enough to show the net this many samples when the set is small (a few hundred
#: pictures make a handful of batches an epoch: 10 epochs were too few steps to learn on
#: the panel's small sets, docs/defaults.md) ...
AUTO_MIN_SAMPLES = 30_000
#: ... up to this many passes.
MAX_AUTO_EPOCHS = 30


def resolve_epochs(epochs: Optional[int], samples: int) -> int:
    """``epochs`` as given, or the automatic count for a training set of ``samples``:
    ``min(MAX_AUTO_EPOCHS, max(AUTO_EPOCHS, ceil(AUTO_MIN_SAMPLES / samples)))``."""
    if epochs is not None:
        return int(epochs)
    needed = math.ceil(AUTO_MIN_SAMPLES / max(1, int(samples)))
    return min(MAX_AUTO_EPOCHS, max(AUTO_EPOCHS, needed))


#: MXNet's kvstore types; dist_* run under a ps-lite job (gluon-triplet launch).
KVSTORES = ("device", "local", "nccl", "dist_sync", "dist_device_sync", "dist_async")
#: The kvstores that need a ps-lite job (``gluon-triplet launch``).
DIST_KVSTORES = tuple(k for k in KVSTORES if k.startswith("dist_"))


@dataclass
class Config:
    """Every setting of a training run.

    The defaults are the recipe chosen by measurement on validation splits carved from the
    training data (``bench/quality.py --split val``): semi-hard online mining in P x K
    batches, L2-normalised linear embeddings with margin 0.2, Adam with a cosine schedule,
    and a small CNN for image data (the MLP otherwise). ``PRESETS["reference"]`` holds the
    reference recipe (offline random triplets, the Dense 256 -> 128 ReLU MLP, SGD).

    Each field's metadata (see :func:`option`) is also its command-line option.
    """

    dataset: str = option(
        "mnist",
        "mnist, fashion-mnist, mnist-5k, idx:DIR, npz:FILE, folder:DIR (class folders of "
        "images), rec:PREFIX (RecordIO from gluon-triplet pack)",
        "data",
        shown_default="mnist; offline it falls back to the bundled mnist-5k",
    )
    data_dir: Optional[str] = option(
        None,
        "directory with the dataset's IDX files",
        "data",
        shown_default="MXNet's dataset cache, Debian's for fashion-mnist, else download",
    )
    # Pictures (folder:, rec:, image:): None = chosen from the data, recorded resolved.
    image_size: Optional[str] = option(
        None,
        "pictures (folder:, rec:, image:): resize and centre-crop to H or HxW pixels",
        "data",
        metavar="H[xW]",
        shown_default="chosen from the data, recorded in config.json",
    )
    image_channels: Optional[int] = option(
        None,
        "pictures: 1 (grey) or 3 (colour)",
        "data",
        shown_default="1 when every sampled picture is grey, else 3",
    )
    upscale: bool = option(
        True, "pictures: enlarge those smaller than the image size (--no-upscale: refuse)", "data"
    )
    strict: bool = option(
        False, "pictures: a corrupt one is an error instead of skipped with a warning", "data"
    )
    workers: Optional[int] = option(
        None,
        "pictures: worker processes that decode them (0: in this process)",
        "data",
        shown_default="the usable CPUs; beside a streamed training epoch, one less",
    )
    max_memory: float = option(
        2.0,
        "GiB as float32 above which samples are streamed instead of held in memory: "
        "folder:/rec: pictures decoded batch by batch by the workers, uncompressed npz/IDX "
        "arrays read batch by batch from the file (a compressed one is refused; 0: always "
        "stream)",
        "data",
        metavar="GIB",
    )
    max_pixels: int = option(
        89_478_485,
        "pictures: one whose header declares more pixels is skipped with a warning "
        "(--strict: an error) before any decoder runs, on every path (training, pack, "
        "image: files); a small file can decode to gigabytes",
        "data",
        metavar="N",
        shown_default="89478485, Pillow's Image.MAX_IMAGE_PIXELS",
    )
    val_fraction: float = option(
        0.1,
        "fraction of the training data held out as a validation split, on which the best "
        "epoch (model-best.params) is chosen by MAP@R: per class (stratified, fixed seed), "
        "or whole classes when the test classes differ from the training ones (open set); "
        "0: no validation split, best is the last epoch",
        "data",
    )
    model: str = option(
        "auto",
        "embedding net, by name: auto = cnn for pictures, else mlp; mlp (Dense layers); cnn "
        "(pooled 3x3 convolutions with BatchNorm, sized for the pictures); convnet (the "
        "reference 5x5 stride-2 convnet); or a model-zoo backbone (e.g. resnet18_v1)",
        "model",
        choices=tuple(ARCHITECTURES),
        metavar="NAME",
    )
    # What a run resolved, recorded in config.json so the net can be rebuilt without data
    # whatever the defaults become; not command-line options.
    input_shape: Optional[Tuple[int, ...]] = recorded(None, "shape of one input sample")
    architecture: Optional[Dict[str, Any]] = recorded(
        None, "the CNN's constructor arguments (block, channels, pool, BatchNorm)"
    )
    pretrained: bool = option(
        False, "model-zoo backbones: start from MXNet's ImageNet weights (a download)", "model"
    )
    pretrained_params: Optional[str] = option(
        None,
        "model-zoo backbones: start the features from this local .params file",
        "model",
        metavar="FILE.params",
        shown_default="none",
    )
    hidden: Optional[Tuple[int, ...]] = option(
        None,
        "hidden layer widths",
        "model",
        metavar="N",
        shown_default="the model's: 256 for the mlp, none for the cnn",
    )
    embedding_size: int = option(128, "dimensions of the embedding", "model")
    output: str = option(
        "linear", "activation of the embedding layer", "model", choices=("relu", "linear")
    )
    normalize: bool = option(True, "L2-normalise embeddings (--no-normalize: raw)", "model")
    init_scale: float = option(0.1, "Uniform init scale", "model")
    margin: float = option(0.2, "triplet loss margin", "training")
    optimizer: str = option("adam", "optimizer", "training", choices=("sgd", "adam"))
    lr: float = option(0.001, "learning rate", "training")
    momentum: float = option(0.0, "SGD momentum", "training")
    weight_decay: float = option(0.0, "weight decay (L2 penalty)", "training")
    batch_size: int = option(1024, "triplets per batch with --miner offline", "training")
    epochs: Optional[int] = option(
        None,
        "passes over the training data",
        "training",
        shown_default=f"auto = {AUTO_EPOCHS}, or as many as show the run "
        f"{AUTO_MIN_SAMPLES:,} samples when the training set is smaller (at most "
        f"{MAX_AUTO_EPOCHS})",
    )
    max_data_bytes: Optional[int] = option(
        None,
        "refuse, from its header and before reading it, any array of the dataset that would "
        "take more memory than this, as stored or as float32 (a decompression bomb)",
        "data",
        metavar="BYTES",
        shown_default="half the memory available when the data is loaded",
    )
    triplets_per_class: Optional[int] = option(
        None,
        "cap on triplets each class anchors per epoch",
        "data",
        shown_default="smallest class size - 1",
    )
    miner: str = option(
        "semi-hard",
        "offline: balanced random triplets per epoch (reference recipe); the others mine "
        "online in P x K batches",
        "triplet mining",
        choices=("offline", "batch-hard", "semi-hard", "batch-all", "distance-weighted"),
    )
    pk_classes: Optional[int] = option(
        None,
        "classes per P x K batch",
        "triplet mining",
        flag=("-P",),
        shown_default="min(10, number of classes)",
    )
    pk_samples: int = option(16, "samples per class in a batch", "triplet mining", flag=("-K",))
    distance: str = option(
        "squared",
        "distance the online miners rank by and the loss compares: squared (squared L2, "
        "gluon.loss.TripletLoss), euclidean (L2) or cosine (1 - cosine similarity)",
        "triplet mining",
        choices=("squared", "euclidean", "cosine"),
    )
    lr_schedule: str = option(
        "cosine",
        "learning-rate schedule over all steps",
        "training",
        choices=("constant", "cosine"),
    )
    # Training-time augmentation on the data path (augment.py).
    augment: str = option(
        "none",
        "training-time augmentation: none, digits (shifts, small rotations), objects "
        "(horizontal flip, small shifts) or photos (random resized crop, flip, colour jitter)",
        "training",
        choices=("none", "digits", "objects", "photos"),
    )
    warmup_epochs: float = option(
        0.0, "ramp the learning rate linearly from 0 over this many epochs", "training"
    )
    ema_decay: float = option(
        0.0,
        "evaluate and save an exponential moving average of the weights with this decay "
        "(e.g. 0.999; ramped up over the first updates as min(decay, (1+n)/(10+n))); "
        "0: the last weights",
        "training",
    )
    soft_margin: bool = option(
        False,
        "soft-margin triplet loss softplus(d(a,p) - d(a,n)) on Euclidean distances "
        "(Hermans et al. 2017) instead of the hinge; the margin then only steers miners",
        "training",
    )
    ctx: str = option(
        "auto",
        "auto, cpu, gpu, gpu:0,1 or cpu:0,1",
        "training",
        shown_default="auto = every GPU if MXNet sees one, else the CPU",
    )
    kvstore: str = option(
        "device",
        "MXNet kvstore: device or local (several contexts), dist_sync or dist_async "
        "(several workers, under gluon-triplet launch)",
        "training",
    )
    seed: int = option(0, "seed of every random choice of the run", "training")
    logdir: str = option("logs", "where run directories go", "output")
    run_name: Optional[str] = option(
        None,
        "run directory name; an existing one is refused",
        "output",
        shown_default="<timestamp>-<dataset>",
    )
    projector_samples: int = option(
        1000, "test samples in the projector: 0 = none, -1 = all (as in embed)", "output"
    )
    projector_every: int = option(
        0,
        "also write the projector embedding every N epochs, one tensor per epoch "
        "(embedding_<epoch>)",
        "output",
        metavar="N",
        shown_default="0 = only the final one",
    )
    plots: bool = option(
        True,
        "write the PNG pictures (curves, PCA, t-SNE) into the run dir; --no-plots: do not",
        "output",
    )
    eval_batch_size: int = option(4096, "samples per batch when embedding for evaluation", "output")
    eval_every: int = option(
        0,
        "also score the test split on its evaluation sample before training and every N "
        "epochs (for its curve); 0: the test split is scored once, in full, after the last "
        "epoch, and the per-epoch figures are the validation split's",
        "output",
        metavar="N",
    )
    eval_samples: int = option(
        2000,
        "samples of each epoch's evaluation (the validation split's, and the test split's "
        "with --eval-every): a fixed seeded sample, each querying the others; the test "
        "split after the last epoch is always scored whole; 0 = the whole split every time",
        "output",
        metavar="N",
    )
    log_every: int = option(50, "batches between loss read-backs", "output")

    def __post_init__(self) -> None:
        self.validate()
        if self.architecture is not None:
            # A copy with the widths as a tuple, like hidden: a loaded record equals the
            # config that wrote it, and the caller's dict stays the caller's.
            self.architecture = {
                **self.architecture,
                "channels": tuple(self.architecture["channels"]),
            }

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid value."""
        self._check_counts()
        self._check_sizes()
        self._check_training()
        self._check_choices()
        self._check_data()

    def _check_counts(self) -> None:
        """Counts and limits, each at least its least; every float finite; the seed."""
        positive_ints = (
            "embedding_size",
            "batch_size",
            "eval_batch_size",
            "log_every",
        )
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ConfigError(
                f"eval_every must be >= 0 (0: the test split after the last epoch only), got "
                f"{self.eval_every}"
            )
        if self.eval_samples < 0 or self.eval_samples == 1:
            raise ConfigError(
                f"eval_samples must be 0 (the whole split) or >= 2, got {self.eval_samples}"
            )
        if self.epochs is not None and self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.projector_samples < -1:
            raise ConfigError(
                f"projector_samples must be -1 (all), 0 (none) or a count, got "
                f"{self.projector_samples}"
            )
        if self.max_data_bytes is not None and self.max_data_bytes < 1:
            raise ConfigError(f"max_data_bytes must be >= 1, got {self.max_data_bytes}")
        for f in fields(self):
            value = getattr(self, f.name)
            # NaN passes every comparison below and is not JSON; inf is no setting either.
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"{f.name} (--{_flag(f.name)}) must be a finite number, got {value}"
                )
        if self.seed < 0:
            raise ConfigError(f"seed (--seed) must be >= 0, got {self.seed}")

    def _check_sizes(self) -> None:
        """Layer widths and shapes, projector and sampling counts, the architecture."""
        for name in ("embedding_size", "hidden"):
            widths = getattr(self, name)
            widths = widths if isinstance(widths, tuple) else () if widths is None else (widths,)
            too_wide = [w for w in widths if w > _MAX_WIDTH]
            if too_wide:
                # MXNet's layer sizes are C ints; such a layer would not fit in memory anyway.
                raise ConfigError(
                    f"{name} (--{_flag(name)}) {too_wide[0]} is too large: MXNet layers hold at "
                    f"most {_MAX_WIDTH} units, and one of {too_wide[0]} units needs "
                    f"{_bytes_text(too_wide[0] * 4)} per input feature (float32 weights)"
                )
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
        if self.architecture is not None:
            check_architecture(self.architecture)
            if self.model not in ("cnn", "convnet"):
                raise ConfigError(
                    f"an architecture applies to the cnn and convnet; model is {self.model!r}"
                )

    def _check_training(self) -> None:
        """The optimiser's numbers, averaging, the validation split, the warm-up."""
        for name in ("lr", "margin", "init_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction (--val-fraction) must be in [0, 1), got {self.val_fraction}"
            )
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        least = AUTO_EPOCHS if self.epochs is None else self.epochs
        if least > 0 and self.warmup_epochs >= least:
            raise ConfigError(f"warmup_epochs ({self.warmup_epochs:g}) must be < epochs ({least})")
        if self.pk_samples < 2:
            raise ConfigError(
                f"pk_samples must be >= 2 (anchors need a positive), got {self.pk_samples}"
            )

    def _check_choices(self) -> None:
        """Every option with choices, and the pairs of choices that do not go together."""
        choices = {f.name: f.metadata["choices"] for f in fields(self) if "choices" in f.metadata}
        choices["kvstore"] = KVSTORES
        for name, valid in choices.items():
            if name in ("optimizer", "output"):
                continue  # their messages predate the generic one, keep them
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"{name} must be one of {', '.join(valid)}; got {getattr(self, name)!r}"
                )
        if self.miner == "offline" and self.distance != "squared":
            raise ConfigError("distance applies to online miners; offline triplets use squared L2")
        if self.soft_margin and self.distance == "cosine":
            # The miner and the loss share one distance; the soft margin's is Euclidean.
            raise ConfigError("soft_margin compares Euclidean distances; not distance cosine")
        if self.miner == "distance-weighted" and self.distance == "cosine":
            raise ConfigError("miner distance-weighted samples by Euclidean distance; not cosine")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.output not in ("relu", "linear"):
            raise ConfigError(f"output must be 'relu' or 'linear', got {self.output!r}")

    def _check_data(self) -> None:
        """How pictures are read, and the run's folder name."""
        if self.image_size is not None:
            from .data.decoding import parse_image_size

            try:
                parse_image_size(self.image_size)
            except ValueError as e:
                raise ConfigError(f"image_size: {e}") from None
        if self.image_channels not in (None, 1, 3):
            raise ConfigError(f"image_channels must be 1 or 3, got {self.image_channels}")
        if not self.max_memory >= 0:
            raise ConfigError(f"max_memory must be >= 0 (GiB), got {self.max_memory}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.run_name is not None and (
            not self.run_name or os.sep in self.run_name or self.run_name in (".", "..")
        ):
            raise ConfigError(f"run_name must be a plain folder name, got {self.run_name!r}")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        if self.architecture is not None:
            d["architecture"] = {
                **self.architecture,
                "channels": list(self.architecture["channels"]),
            }
        d["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Config:
        """Build a Config from a dict, naming any unknown key or wrongly typed value."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        defaults = {f.name: f.default for f in fields(cls)}
        removed = sorted(set(d) & set(REMOVED_KEYS))
        if removed:
            raise ConfigError(
                f"config key {removed[0]!r} is no longer a setting: {REMOVED_KEYS[removed[0]]}"
            )
        unknown = sorted(set(d) - set(defaults))
        if unknown:
            raise ConfigError(
                f"unknown config key(s): {', '.join(unknown)}; valid keys: {', '.join(defaults)}"
            )
        return cls(**{key: _coerce(key, value, defaults[key]) for key, value in d.items()})

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        atomic_write_text(os.fspath(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> Config:
        """Read a JSON config file; every problem is a ConfigError naming the file."""
        return cls.load_recorded(path)[0]

    @classmethod
    def load_recorded(
        cls,
        path: Union[str, os.PathLike[str]],
        upgrade: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> Tuple[Config, Dict[str, Any]]:
        """:meth:`load`, and the JSON object as the file holds it (the keys it records),
        from one read of the file; every problem is a ConfigError naming the file.
        ``upgrade`` turns an object an earlier version wrote into today's keys."""
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
                return cls.from_dict(upgrade(d)), d
            return cls.from_dict(d), d
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


_MAX_WIDTH = 2**31 - 1


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _bytes_text(n: int) -> str:
    from .resources import format_bytes

    return format_bytes(n)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the key's default."""
    if key in ("data_dir", "run_name", "image_size", "pretrained_params"):
        if value is None or isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} must be a string or null, got {value!r}")
    if key == "architecture":  # checked by Config.validate
        if value is None or isinstance(value, dict):
            return value
        raise ConfigError(f"config key {key!r} must be an object or null, got {value!r}")
    if key in (
        "triplets_per_class",
        "pk_classes",
        "image_channels",
        "workers",
        "max_data_bytes",
        "epochs",
    ):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ConfigError(f"config key {key!r} must be an integer or null, got {value!r}")
    if key in ("hidden", "input_shape"):
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
