"""Sets of pictures to arrays: :class:`DecodedImages` (OpenCV for plain PNGs,
:mod:`.fastpng`, else :mod:`.imaging`), the worker processes that decode a set, and the
checks and warnings for bad pictures. The one-picture policy is in :mod:`.imaging`."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Optional, Tuple

import numpy as np

from ..errors import DataError, ImageFileError, TooManyPixels
from ..progress import slow_progress
from .fastpng import available, decode_png
from .headers import MAX_PIXELS, check_pixels, picture_size
from .imaging import (
    GREY_MODES,
    MAX_AUTO_SIZE,
    SIZE_SAMPLE,
    ImageOptions,
    as_mode,
    choose_image_size,
    decode_picture,
    error_reason,
    fit_picture,
    parse_image_size,
)

__all__ = [
    "as_mode",
    "check_pixels",
    "choose_image_size",
    "decode_all",
    "decode_picture",
    "DecodedImages",
    "default_workers",
    "error_reason",
    "FIRST_BAD",
    "fit_picture",
    "GREY_MODES",
    "ImageOptions",
    "MAX_AUTO_SIZE",
    "MAX_PIXELS",
    "parse_image_size",
    "picture_size",
    "report_bad",
    "SIZE_SAMPLE",
    "skip_or_refuse",
    "training_workers",
    "worker_signals",
]

logger = logging.getLogger("gluon_triplet")


FIRST_BAD = 3  # how many bad paths a message names


# Status of one decoded picture.
OK, CORRUPT, TOO_SMALL, TOO_LARGE = 0, 1, 2, 3


class DecodedImages:
    """A ``gluon.data.Dataset`` of fixed-size pictures: item ``i`` is ``(pixels, status)``.

    ``pixels`` is ``(H, W)`` uint8 (one channel) or ``(C, H, W)`` uint8 (RGB), the layout
    the package uses; ``status`` is ``OK``, ``CORRUPT`` or ``TOO_SMALL`` (then the pixels are
    zeros). It never raises on a bad picture, so one corrupt file cannot stop a DataLoader.

    Parameters
    ----------
    reader : FolderImages or RecordImages
    size : (int, int)
        Height, width.
    channels : {1, 3}
    upscale : bool
        Pictures smaller than ``size`` are enlarged (True) or reported ``TOO_SMALL``.
    indices : (M,) int array, optional
        Positions of ``reader`` this dataset serves (default: all).
    max_pixels : int
        Pictures whose header declares more pixels are ``TOO_LARGE``, never decoded.
    """

    def __init__(self, reader, size, channels, upscale=True, indices=None, *, max_pixels=None):
        self.reader = reader
        self.size = tuple(int(s) for s in size)
        self.channels = int(channels)
        self.upscale = upscale
        self.indices = np.arange(len(reader)) if indices is None else np.asarray(indices)
        self.max_pixels = int(MAX_PIXELS if max_pixels is None else max_pixels)

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        return self.size if self.channels == 1 else (self.channels, *self.size)

    def __len__(self):
        return len(self.indices)

    def subset(self, positions) -> DecodedImages:
        """The items at ``positions`` (of this dataset) as another dataset."""
        return DecodedImages(
            self.reader,
            self.size,
            self.channels,
            self.upscale,
            self.indices[np.asarray(positions)],
            max_pixels=self.max_pixels,
        )

    def concat(self, other: DecodedImages) -> DecodedImages:
        """This dataset's items, then ``other``'s (the same pictures, e.g. two splits)."""
        if other.reader is not self.reader:
            raise ValueError("concat: the datasets read different pictures")
        both = np.concatenate([self.indices, other.indices])
        return DecodedImages(
            self.reader, self.size, self.channels, self.upscale, both, max_pixels=self.max_pixels
        )

    def name(self, i: int) -> str:
        """Where item ``i`` comes from (a file, or a record of a .rec), for messages."""
        return self.reader.name(int(self.indices[i]))

    def picture(self, i: int) -> np.ndarray:
        """The pixels of item ``i``; raises ImageFileError on a bad picture.

        A plain 8-bit PNG is decoded by OpenCV when it is installed, everything else (and
        every resize) by Pillow; the header's size is checked first against ``max_pixels``
        (:class:`~gluon_triplet.errors.TooManyPixels`).
        """
        h, w = self.size
        buf = self.reader.encoded(int(self.indices[i]))
        check_pixels(*picture_size(buf), self.max_pixels)
        arr = decode_png(buf, self.channels)
        if arr is not None and arr.shape[:2] == (h, w):
            return arr if self.channels == 1 else arr.transpose(2, 0, 1)
        if arr is None:
            img = decode_picture(buf, self.channels, max_pixels=self.max_pixels)
        else:
            from PIL import Image

            img = Image.fromarray(np.ascontiguousarray(arr))
        img = fit_picture(img, self.size, self.upscale)
        # tobytes: a third of np.asarray's cost on small pictures (no array interface)
        arr = np.frombuffer(img.tobytes(), dtype=np.uint8)
        return arr.reshape(h, w) if self.channels == 1 else arr.reshape(h, w, 3).transpose(2, 0, 1)

    def decode_batch(self, items: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Items ``items`` at once: what a DataLoader worker does for one batch.

        Returns
        -------
        pixels : (M, ...) uint8
            ``sample_shape`` per item; zeros for a bad picture.
        status : (M,) int32
            ``OK``, ``CORRUPT`` or ``TOO_SMALL``.
        """
        items = np.asarray(items)
        out = np.zeros((len(items), *self.sample_shape), dtype=np.uint8)
        status = np.zeros(len(items), dtype=np.int32)
        for k, i in enumerate(items.tolist()):
            try:
                out[k] = self.picture(i)
            except ImageFileError as e:
                status[k] = _status(e)
        return out, status

    def __getitem__(self, i):
        try:
            return self.picture(i), np.int32(OK)
        except ImageFileError as e:
            return np.zeros(self.sample_shape, np.uint8), np.int32(_status(e))

    def transform_first(self, fn):  # the gluon.data.Dataset API DataLoader users expect
        from mxnet.gluon.data import SimpleDataset

        return SimpleDataset(self).transform_first(fn)


def _status(e: ImageFileError) -> int:
    if isinstance(e, TooManyPixels):
        return TOO_LARGE
    return TOO_SMALL if "smaller than" in str(e) else CORRUPT


def default_workers() -> int:
    """The usable CPUs (the scheduler's affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def training_workers(cpus: Optional[int] = None) -> int:
    """Decoding workers beside a training epoch: the usable CPUs less one, at least one
    (the step's OpenMP threads need the rest; loading and evaluation use
    :func:`default_workers`).

    Parameters
    ----------
    cpus : int, optional
        Usable CPUs (default: :func:`default_workers`).
    """
    cpus = default_workers() if cpus is None else cpus
    return max(1, cpus - 1)


def worker_signals():
    """Default SIGINT/SIGTERM handlers while DataLoader forks its workers (a run's own
    handlers, inherited, would print a traceback in each worker the pool stops)."""
    import signal

    from ..signals import handlers

    return handlers((signal.SIGINT, signal.SIGTERM), signal.SIG_DFL)


def _batchify(items):
    pixels = np.stack([p for p, _ in items])
    return pixels, np.asarray([s for _, s in items], dtype=np.int32)


def decode_all(dataset: DecodedImages, workers: Optional[int] = None, batch_size: int = 256):
    """Decode every picture of ``dataset``, in worker processes.

    Returns
    -------
    pixels : (M, ...) uint8
        ``dataset.sample_shape`` per picture.
    status : (M,) int32
        ``OK``, ``CORRUPT`` or ``TOO_SMALL``.
    """
    from mxnet.gluon.data import DataLoader

    workers = default_workers() if workers is None else workers
    out = np.empty((len(dataset), *dataset.sample_shape), dtype=np.uint8)
    status = np.empty(len(dataset), dtype=np.int32)
    if len(dataset) == 0:
        return out, status
    # numpy batches (no NDArray conversion): a worker's batch crosses the process boundary
    # once, and the pixels land in the preallocated array.
    available()  # OpenCV imported once, here, not in each forked worker
    with worker_signals():
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers if len(dataset) > batch_size else 0,
            batchify_fn=_batchify,
        )
    start = 0
    bar = slow_progress(len(dataset), "decoding")
    try:
        for pixels, codes in loader:
            out[start : start + len(codes)] = pixels
            status[start : start + len(codes)] = codes
            start += len(codes)
            bar.update(len(codes))
    finally:
        bar.close()
    return out, status


def report_bad(dataset: DecodedImages, status: np.ndarray, strict: bool, where: str):
    """Turn bad pictures into the one warning or the one error the user sees.

    Raises
    ------
    DataError
        Pictures smaller than the crop (always), or corrupt ones with ``strict``.
    """

    def first(items: np.ndarray, sizes: bool = False) -> str:
        names = []
        for position in dataset.indices[items[:FIRST_BAD]].tolist():
            name = dataset.reader.name(position)
            with contextlib.suppress(ImageFileError):
                if sizes:
                    name += " ({}x{})".format(*picture_size(dataset.reader.encoded(position)))
            names.append(name)
        more = f" and {len(items) - len(names)} more" if len(items) > len(names) else ""
        return f"first: {', '.join(names)}{more}"

    small = np.flatnonzero(status == TOO_SMALL)
    if len(small):
        h, w = dataset.size
        raise DataError(
            f"{where}: {len(small)} image(s) smaller than the {h}x{w} crop with upscaling off "
            f"({first(small)}); choose a smaller --image-size or allow upscaling"
        )
    large = np.flatnonzero(status == TOO_LARGE)
    if len(large):
        skip_or_refuse(
            f"{len(large)} image(s) in {where} above --max-pixels {dataset.max_pixels}, not "
            f"decoded ({first(large, sizes=True)})",
            strict,
        )
    bad = np.flatnonzero(status == CORRUPT)
    if len(bad):
        skip_or_refuse(
            f"{len(bad)} unreadable or corrupt image(s) in {where} ({first(bad)})", strict
        )


def skip_or_refuse(text: str, strict: bool) -> None:
    """``text`` as a warning that pictures are skipped, or (``strict``) a DataError."""
    if strict:
        raise DataError(text + "; --strict refuses them")
    logger.warning("%s; skipped", text)
