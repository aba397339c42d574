"""The validation split a run chooses its best epoch on (never on the test split), and
what the log and ``metrics.json`` say of it and of an open set."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Optional

import numpy as np

from ..data.validation import carve_validation, reorder, split_rows, unseen_test_classes

__all__ = ["open_set_note", "validation_record", "validation_split", "trainer_arguments"]

logger = logging.getLogger("gluon_triplet")


def open_set_note(y_train, y_test) -> Optional[str]:
    """``"open set: N test classes never seen in training"`` (with how many test classes
    there are when some were seen), or None when every test class is a training class."""
    unseen = unseen_test_classes(y_train, y_test)
    if not len(unseen):
        return None
    total = len(np.unique(np.asarray(y_test)))
    of = "" if len(unseen) == total else f" (of {total})"
    return f"open set: {len(unseen)} test classes{of} never seen in training"


def validation_split(data, config):
    """``(data, val)``: ``data`` with its training split reduced to the samples that train,
    and ``val`` a dict (``x``, ``y``, ``mode``, ``unseen``) or None without a validation
    split; logs what was carved and whether the test classes are an open set."""
    note = open_set_note(data.y_train, data.y_test)
    unseen = len(unseen_test_classes(data.y_train, data.y_test))
    if note:
        logger.info("%s: retrieval is scored among the test classes only", note)
    split = carve_validation(
        data.y_train, data.y_test, config.val_fraction, max_samples=config.eval_samples
    )
    if split.mode == "none":
        why = f" ({split.note})" if config.val_fraction > 0 else ""
        logger.info("no validation split%s: the best epoch is the last", why)
        return data, None
    x_fit, x_val, order = split_rows(data.x_train, split)
    y = np.asarray(data.y_train)[order]
    head = len(split.fit)
    paths = reorder(data.paths_train, order)
    data = dataclasses.replace(
        data,
        x_train=x_fit,
        y_train=y[:head],
        paths_train=None if paths is None else paths[:head],
    )
    val = {"x": x_val, "y": y[head:], "mode": split.mode, "unseen": unseen, "cap": split.cap}
    classes = len(np.unique(val["y"]))
    how = (
        f"{classes} whole training classes (open set)"
        if split.mode == "class-disjoint"
        else f"{config.val_fraction:.0%} of each class with enough samples, {classes} classes"
    )
    if split.cap is not None:
        how += (
            f"; at most {split.cap} a class, the --eval-samples {config.eval_samples} "
            "each epoch scores"
        )
    logger.info(
        "validation split: %d of the training samples (%s), chosen with a fixed seed; "
        "the best epoch is chosen on its MAP@R, the test split is only reported",
        len(val["y"]),
        how,
    )
    return data, val


def trainer_arguments(val, config) -> Dict[str, Any]:
    """The ``val_x``, ``val_y``, ``val_triplets`` of a
    :class:`~gluon_triplet.training.trainer.TripletTrainer` ({} without a split)."""
    from ..data.triplets import create_pairs

    if val is None:
        return {}
    try:
        triplets = create_pairs(val["y"], seed=config.seed, warn=False)
    except ValueError as e:
        raise ValueError(f"validation split: {e}") from None
    return {"val_x": val["x"], "val_y": val["y"], "val_triplets": triplets}


def validation_record(val, data) -> Dict[str, Any]:
    """What ``metrics.json``'s ``dataset`` says of the split and of an open set."""
    record: Dict[str, Any] = {
        "validation": 0 if val is None else len(val["y"]),
        "validation_mode": "none" if val is None else val["mode"],
    }
    if val is None:
        count = len(unseen_test_classes(data.y_train, data.y_test))
    else:  # counted before whole classes were held out of the training split
        count = int(val["unseen"])
    if val is not None and val.get("cap") is not None:
        record["validation_per_class_cap"] = int(val["cap"])
    record["open_set"] = bool(count)
    record["unseen_test_classes"] = count
    return record
