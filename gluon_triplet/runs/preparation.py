"""What a run settles before it trains: the data's validation split and recorded picture
shape, the triplets, the model and epoch count resolved once, and the memory check."""

from __future__ import annotations

import dataclasses
import logging
import math

from ..errors import ConfigError
from .report import shape_text
from .selection import validation_split

__all__ = [
    "check_memory",
    "dense_widths",
    "make_triplets",
    "prepare_data",
    "record_image_shape",
    "resolve_model",
    "resolve_run_epochs",
]

logger = logging.getLogger("gluon_triplet")


def prepare_data(config, data):
    """``(config, data, val, requested)``: the config with what the data resolved, the
    data without its validation split (``val``, see :mod:`.selection`), and the dataset
    the user asked for."""
    config = record_image_shape(config, data)
    data, val = validation_split(data, config)
    requested = config.dataset
    if data.name != config.dataset:
        # The offline fallback (mnist -> mnist-5k): the run records what it trained on, so
        # that --resume, embed and evaluate read the same data and never download.
        config = dataclasses.replace(config, dataset=data.name)
    return config, data, val, requested


def record_image_shape(config, data):
    """Pictures decoded to a size and channel count chosen from the data: record them, so
    ``embed`` and ``evaluate`` decode other pictures the same way."""
    if not data.name.startswith(("folder:", "rec:", "image:")):
        return config
    shape = data.x_train.shape[1:]
    channels = 1 if len(shape) == 2 else int(shape[0])
    size = f"{shape[-2]}x{shape[-1]}"
    return dataclasses.replace(config, image_size=size, image_channels=channels)


def make_triplets(data, config):
    """The training set of per-epoch triplets and the fixed test triples, each split's
    errors naming the dataset and the split."""
    from ..data.triplets import TripletDataset, create_pairs

    try:
        split = "training"
        train_set = TripletDataset(
            data.x_train,
            data.y_train,
            seed=config.seed,
            triplets_per_class=config.triplets_per_class,
        )
        split = "test"
        test_triplets = create_pairs(data.y_test, seed=config.seed, warn=False)
    except ValueError as e:
        raise ValueError(f"{data.name} {split} set: {e}") from None
    return train_set, test_triplets


def resolve_run_epochs(config, samples):
    """``epochs`` left automatic, resolved for ``samples`` training samples, then ``lr``
    and ``warmup_epochs`` left automatic, resolved for that many epochs; logged and put in
    the config the run records (``--resume`` continues to the same count and rates)."""
    from ..config import (
        AUTO_EPOCHS,
        AUTO_MIN_SAMPLES,
        MAX_AUTO_EPOCHS,
        SHORT_RUN_EPOCHS,
        resolve_epochs,
        resolve_schedule,
        short_run,
    )

    if config.epochs is None:
        config = dataclasses.replace(config, epochs=resolve_epochs(None, samples))
        logger.info(
            "epochs: %d (auto: %s training samples; at least %s samples seen, at least %d "
            "and at most %d epochs)",
            config.epochs,
            f"{samples:,}",
            f"{AUTO_MIN_SAMPLES:,}",
            AUTO_EPOCHS,
            MAX_AUTO_EPOCHS,
        )
    lr, warmup = resolve_schedule(config.lr, config.warmup_epochs, config.epochs)
    auto = [name for name in ("lr", "warmup_epochs") if getattr(config, name) is None]
    if auto and short_run(config.epochs):
        logger.info(
            "learning rate %g, warm-up %g epoch (auto %s: a run of at most %d epochs)",
            lr,
            warmup,
            " and ".join(auto),
            SHORT_RUN_EPOCHS,
        )
    return dataclasses.replace(config, lr=lr, warmup_epochs=warmup)


def resolve_model(config, shape):
    """``model`` (``auto`` too) and a CNN's architecture resolved once for samples of
    ``shape``, logged, and put in the config the run records, so that the run dir rebuilds
    this net whatever the defaults become."""
    from ..nets.zoo import resolve_architecture

    name, architecture = resolve_architecture(config, shape)
    if name != config.model or architecture:
        shown = name
        if architecture:
            widths = " ".join(str(c) for c in architecture["channels"])
            shown += f", {architecture['block']} blocks {widths}"
            if architecture.get("batch_norm"):
                shown += f", BatchNorm from convolution {architecture.get('batch_norm_from', 1)}"
            if architecture.get("pool_first"):
                shown += ", pooling first"
        logger.info(
            "model: %s (%s%s data)", shown, "auto: " * (config.model == "auto"), shape_text(shape)
        )
    return dataclasses.replace(config, model=name, input_shape=shape, architecture=architecture)


def check_memory(config, sample_shape, num_classes: int, num_contexts: int = 1) -> None:
    """Refuse, before anything is allocated, a net or a batch that cannot fit in memory.

    A lower bound, in float32 bytes: the parameters of the net's Dense layers (the first
    one fed by the flattened sample; a CNN's by its last feature map, or one value per
    channel when it pools globally: :func:`dense_widths`), times 2 + the optimizer's
    state arrays (gradients; Adam's 2 moments, SGD's momentum), per context;
    a batch's inputs and activations, forward and backward; and for the online miners the
    batch's pairwise distance matrix.
    """
    from ..resources import available_memory, format_bytes

    available = available_memory()
    if available is None:
        return
    features, widths = dense_widths(config, sample_shape)
    params = sum(a * b + b for a, b in zip([features, *widths[:-1]], widths))
    states = 2 if config.optimizer == "adam" else (1 if config.momentum else 0)
    model_bytes = params * 4 * (2 + states) * num_contexts
    if config.miner == "offline":
        batch, what = 3 * config.batch_size, f"--batch-size {config.batch_size}"
    else:
        from ..data.samplers import resolve_p

        p = resolve_p(config.pk_classes, num_classes)
        batch, what = p * config.pk_samples, f"-P {p} x -K {config.pk_samples}"
    batch_bytes = batch * (features + sum(widths)) * 4 * 2
    pairwise = 0 if config.miner == "offline" else batch * batch * 4
    total = model_bytes + batch_bytes + pairwise
    if total <= available:
        return
    if model_bytes >= batch_bytes + pairwise:
        flags = "--hidden / --embedding-size"
        reason = (
            f"its {params} parameters need {format_bytes(model_bytes)} with their gradients "
            "and optimizer state"
        )
    else:
        flags = "-K/--pk-samples, -P/--pk-classes" if pairwise else "--batch-size"
        reason = f"a batch of {batch} samples ({what}) needs {format_bytes(batch_bytes + pairwise)}"
        if pairwise:
            reason += f", {format_bytes(pairwise)} of it for its {batch} x {batch} distances"
    raise ConfigError(
        f"this run needs at least {format_bytes(total)} of memory: {reason}; only "
        f"{format_bytes(available)} is available; use a smaller {flags}"
    )


def dense_widths(config, sample_shape):
    """The net's Dense layers as ``(features, [width, ...])``: the width of what the first
    one is fed, then each layer's output width, for a config whose model is resolved
    (:func:`resolve_model`): a CNN's from its recorded architecture."""
    shape = tuple(int(d) for d in sample_shape)
    features = math.prod(shape)
    architecture = config.architecture
    if architecture:
        channels = architecture["channels"]
        if architecture.get("pool") == "avg":
            features = channels[-1]  # global average pooling: one value per channel
        else:
            h, w = shape[-2:]
            for _ in channels:  # each block halves the map, rounding up
                h, w = -(-h // 2), -(-w // 2)
            features = channels[-1] * h * w
    elif config.model != "mlp":
        features = 1  # a backbone's features: unknown here, and no bound needed for it
    hidden = (
        tuple(config.hidden)
        if config.hidden is not None
        else ((256,) if config.model == "mlp" else ())
    )
    return features, [*hidden, config.embedding_size]
