"""A dataset as the trainer takes it: :class:`DataBundle`, and what every source does to
make one (each split checked and converted, the fixed test split of a source without
one, the choice to stream samples above ``--max-memory``)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np

from ..errors import DataError

__all__ = ["DataBundle", "above_max_memory", "checked_samples", "make_bundle", "stratified_split"]

# Fixed, and independent of any run seed, so every run evaluates on the same test split.
_SPLIT_SEED = 20_231_123


@dataclass(frozen=True, eq=False)
class DataBundle:
    """A train/test split ready for training.

    Attributes
    ----------
    name : str
        The dataset spec: ``"mnist"``, ``"fashion-mnist"``, ``"mnist-5k"``, ``"idx:DIR"``,
        ``"npz:FILE"``, ``"folder:DIR"``, ``"rec:PREFIX"`` or ``"image:PATH,..."``.
    x_train, x_test : (N, ...) float32 or LazyImages
        Samples; images are ``(N, H, W)`` (one channel) or ``(N, C, H, W)`` (colour), in
        [0, 1] if stored as uint8. Above ``max_memory`` a
        :class:`~gluon_triplet.data.streaming.LazyImages` that reads them when indexed.
    y_train, y_test : (N,) int64
        Class labels.
    class_names : tuple of str or None
        Human-readable name of each label value, when known.
    source : str
        Where the data was read from.
    paths_train, paths_test : tuple of str or None
        The absolute path of each sample's picture file, for pictures read from files
        (``folder:``, ``image:``); None when samples have no file of their own (arrays,
        ``rec:``).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: Optional[Tuple[str, ...]]
    source: str
    paths_train: Optional[Tuple[str, ...]] = field(default=None, repr=False)
    paths_test: Optional[Tuple[str, ...]] = field(default=None, repr=False)

    def split(self, part: str) -> Tuple[Any, np.ndarray]:
        """Samples and labels of ``part``: "test", "train" or "all" (train first; streamed
        pictures stay undecoded)."""
        if part != "all":
            return (self.x_test, self.y_test) if part == "test" else (self.x_train, self.y_train)
        from .streaming import LazyImages, concat_lazy

        if isinstance(self.x_train, LazyImages):
            x = concat_lazy(self.x_train, self.x_test)
        else:
            x = np.concatenate([self.x_train, self.x_test])
        return x, np.concatenate([self.y_train, self.y_test])

    def split_paths(self, part: str) -> Optional[List[str]]:
        """The source file of each sample of :meth:`split` ``(part)``, or None when the
        samples have no files (arrays, ``rec:``)."""
        train, test = self.paths_train, self.paths_test
        if train is None or test is None:
            return None
        return list({"train": train, "test": test, "all": (*train, *test)}[part])


def make_bundle(
    name: str,
    source: str,
    train: Tuple[Any, np.ndarray],
    test: Tuple[Any, np.ndarray],
    class_names: Optional[Tuple[str, ...]],
) -> DataBundle:
    """A :class:`DataBundle` of checked ``(samples, labels)`` splits; refuses an empty
    test split or splits whose samples differ in shape."""
    if len(test[1]) == 0:
        raise DataError(f"{source}: no test samples (every class has a single sample)")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(
            f"{source}: train samples have shape {train[0].shape[1:]} "
            f"but test samples {test[0].shape[1:]}"
        )
    return DataBundle(name, train[0], train[1], test[0], test[1], class_names, source)


def checked_samples(x, y, where: str, split: str, lazy=None) -> Tuple[Any, np.ndarray]:
    """Validate one split and convert it to (float32 samples, int64 labels).

    With ``lazy`` (the image options), ``x`` is a file's mapped array: the samples become
    a :class:`~gluon_triplet.data.streaming.LazyImages` that reads them batch by batch, checked
    for NaN and infinities one batch at a time.
    """
    if lazy is None:
        x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: {split} samples are not numeric (dtype {x.dtype})")
    mapped = None
    if lazy is not None:
        from .mapped import MappedSamples

        mapped = MappedSamples(x, f"{where} ({split})")
        shape: Tuple[int, ...] = (len(x), *mapped.sample_shape)
    else:
        if x.ndim == 4:
            from .layout import to_canonical_layout

            x = to_canonical_layout(x, f"{where} ({split})")
        shape = x.shape
    if len(shape) < 2:
        raise DataError(f"{where}: {split} samples must be (N, ...) arrays, got shape {shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: {split} labels must be (N,) or (N, 1), got shape {y.shape}")
    if shape[0] != len(y):
        raise DataError(
            f"{where}: {split} sample/label count mismatch: {shape[0]} samples, {len(y)} labels"
        )
    if shape[0] == 0:
        raise DataError(f"{where}: {split} set is empty")
    if math.prod(shape) == 0:
        raise DataError(
            f"{where}: {split} samples have no values: shape {shape} (every sample is empty)"
        )
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "biu":
        raise DataError(f"{where}: {split} labels must be integers, got dtype {y.dtype}")
    if y.dtype == np.uint64 and int(y.max()) > np.iinfo(np.int64).max:
        # Cast to int64 they would wrap to negative numbers without a word.
        raise DataError(
            f"{where}: {split} labels must fit in int64; got uint64 values up to {int(y.max())} "
            "(number the classes 0, 1, ... instead)"
        )
    y = y.astype(np.int64, copy=False)
    if mapped is not None:
        from .streaming import LazyImages

        return LazyImages(mapped, lazy.workers), y
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= 255
    else:
        out = x.astype(np.float32, copy=False)
        step = max(1, 2**22 // max(1, out[0].size))  # a bounded temporary of booleans
        if not all(np.isfinite(out[s : s + step]).all() for s in range(0, len(out), step)):
            raise DataError(f"{where}: {split} samples contain NaN or infinite values")
    return out, y


def above_max_memory(shapes, options, source: str) -> bool:
    """Whether samples of these shapes take more than ``--max-memory`` as float32 (then
    they are read from their file batch by batch); logs the decision to stream."""
    if options is None:
        return False
    need = sum(math.prod(int(d) for d in shape) for shape in shapes) * 4
    if need <= options.max_memory * 2**30:
        return False
    logging.getLogger("gluon_triplet").info(
        "%s: samples are %.2f GiB as float32, above --max-memory %g GiB: streaming them, "
        "read from the file batch by batch",
        source,
        need / 2**30,
        options.max_memory,
    )
    return True


def stratified_split(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic 80/20 split per class: floor(n/5) test, at least one of each if n >= 2."""
    rng = np.random.default_rng(_SPLIT_SEED)
    order = np.argsort(y, kind="stable")
    _, starts = np.unique(y[order], return_index=True)
    train: List[np.ndarray] = []
    test: List[np.ndarray] = []
    for members in np.split(order, starts[1:]):
        members = rng.permutation(members)
        n = len(members)
        k = min(max(n // 5, 1), n - 1) if n >= 2 else 0
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
