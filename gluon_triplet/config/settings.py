"""The :class:`Config` dataclass: every setting of a training run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from ..nets.architectures import ARCHITECTURES
from . import records
from .options import (
    AUTO_EPOCHS,
    AUTO_MIN_SAMPLES,
    DEFAULT_LR,
    MAX_AUTO_EPOCHS,
    SHORT_RUN_EPOCHS,
    SHORT_RUN_LR,
    SHORT_RUN_WARMUP,
    option,
    recorded,
)
from .validation import validate

__all__ = ["Config"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Config:
    """Every setting of a training run; each field's metadata (see
    :func:`~gluon_triplet.config.options.option`) is also its command-line option."""

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
        "epoch (model-best.params) is chosen by MAP@R: per class (stratified, fixed seed; "
        "at most --eval-samples / classes of each class, what an epoch's evaluation "
        "scores), or whole classes when the test classes differ from the training ones "
        "(open set); 0: no validation split, best is the last epoch",
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
    # What a run resolved, recorded so the net can be rebuilt without the data.
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
    lr: Optional[float] = option(
        None,
        "learning rate (the peak of the schedule)",
        "training",
        shown_default=f"auto = {DEFAULT_LR:g}, or {SHORT_RUN_LR:g} in runs of at most "
        f"{SHORT_RUN_EPOCHS} epochs",
    )
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
    augment: str = option(
        "none",
        "training-time augmentation: none, digits (shifts, small rotations), objects "
        "(horizontal flip, small shifts) or photos (random resized crop, flip, colour jitter)",
        "training",
        choices=("none", "digits", "objects", "photos"),
    )
    warmup_epochs: Optional[float] = option(
        None,
        "ramp the learning rate linearly from 0 over this many epochs",
        "training",
        shown_default=f"auto = 0, or {SHORT_RUN_WARMUP:g} in runs of at most "
        f"{SHORT_RUN_EPOCHS} epochs",
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
        if self.architecture is not None:  # a copy, its widths a tuple like hidden's
            self.architecture = {
                **self.architecture,
                "channels": tuple(self.architecture["channels"]),
            }

    def validate(self) -> None:
        """Raise :class:`~gluon_triplet.errors.ConfigError` naming the first invalid value."""
        validate(self)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of this config."""
        return records.to_dict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Config:
        """Build a Config from a dict, naming any unknown key or wrongly typed value."""
        return records.from_dict(cls, d)

    def save(self, path: PathLike) -> None:
        """Write this config to the JSON file ``path``."""
        records.save(self, path)

    @classmethod
    def load(cls, path: PathLike) -> Config:
        """Read a JSON config file; every problem is a ConfigError naming the file."""
        return records.load_recorded(cls, path)[0]

    @classmethod
    def load_recorded(
        cls,
        path: PathLike,
        upgrade: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> Tuple[Config, Dict[str, Any]]:
        """:meth:`load`, and the JSON object as the file holds it; ``upgrade`` turns an
        object an earlier version wrote into today's keys."""
        return records.load_recorded(cls, path, upgrade)
