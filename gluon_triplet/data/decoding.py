"""Pictures to arrays: the size and colour policy (resize to cover, centre crop, grey or
RGB), decoding by Pillow (or OpenCV for plain PNGs, :mod:`.fastpng`), the worker processes
that decode a set, and the checks and warnings for bad pictures."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import DataError, ImageFileError, TooManyPixels
from ..progress import slow_progress
from .fastpng import available, decode_png
from .headers import MAX_PIXELS, check_pixels, picture_size, pillow_allows

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


#: Largest side the automatic ``--image-size`` picks (the CNN's cost grows with the area).
MAX_AUTO_SIZE = 64


#: How many pictures :func:`choose_image_size` looks at.
SIZE_SAMPLE = 300


# Pillow modes holding one grey channel (with or without alpha).
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


FIRST_BAD = 3  # how many bad paths a message names


# Status of one decoded picture.
OK, CORRUPT, TOO_SMALL, TOO_LARGE = 0, 1, 2, 3


def parse_image_size(text) -> Optional[Tuple[int, int]]:
    """``"64"`` -> ``(64, 64)``, ``"48x64"`` -> ``(48, 64)`` (height x width); None -> None.

    Raises
    ------
    ValueError
        Not ``H`` or ``HxW`` with positive integers.
    """
    if text is None:
        return None
    if isinstance(text, (tuple, list)) and len(text) == 2:
        h, w = (int(v) for v in text)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
        if not m:
            raise ValueError(f"image size must be H or HxW (e.g. 64 or 48x64), got {text!r}")
        h = int(m.group(1))
        w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {text!r}")
    return h, w


def fit_picture(img, size: Tuple[int, int], upscale: bool = True):
    """Resize a Pillow image so it covers ``size`` (height, width), then centre-crop it.

    Aspect ratio is kept: the scale is the larger of ``H / h`` and ``W / w``.

    Raises
    ------
    ImageFileError
        The picture is smaller than ``size`` and ``upscale`` is False.
    """
    from PIL import Image

    th, tw = size
    w, h = img.size
    if (w, h) == (tw, th):
        return img
    scale = max(th / h, tw / w)
    if scale > 1 and not upscale:
        raise ImageFileError(f"{w}x{h} pixels is smaller than the {tw}x{th} crop")
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None if scale > 0.5 else 2.0)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return img.crop((left, top, left + tw, top + th))


# Full scale of the grey modes beyond 8 bits: 16-bit integers (Pillow opens 16-bit grey
# PNG, TIFF and PGM as I;16*, and older versions as I) and floats, taken as [0, 1].
_WIDE_GREY = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}
_WIDE_GREY.update({"I": 65535.0, "F": 1.0})


def as_mode(img, channels: int):
    """``img`` converted to one grey channel or RGB; alpha is dropped.

    Grey of more than 8 bits is scaled to 8 (``I;16*`` and ``I`` from 0-65535, ``F``
    from 0-1, rounded and clipped) before anything else, for grey and for RGB alike:
    Pillow's own conversion clips, which turns a 16-bit picture nearly white.
    """
    scale = _WIDE_GREY.get(img.mode)
    if scale is not None:
        from PIL import Image

        arr = np.asarray(img, dtype=np.float64) * (255.0 / scale)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if channels == 1:
        return img if img.mode == "L" else img.convert("L")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_picture(buf: bytes, channels: int, *, max_pixels: int = MAX_PIXELS):
    """Encoded picture bytes as a Pillow image in mode ``L`` (``channels`` 1) or ``RGB``.

    EXIF orientation is applied, as OpenCV does. A header declaring more than
    ``max_pixels`` pixels raises :class:`~gluon_triplet.errors.TooManyPixels` before any
    pixel is decoded; any other failure (empty, truncated or corrupt data, unknown
    format) raises ImageFileError.
    """
    from PIL import Image, ImageOps

    pillow_allows(max_pixels)
    try:
        img = Image.open(io.BytesIO(buf))
    except Image.DecompressionBombError as e:  # beyond twice the limit, in a rare format
        raise TooManyPixels(error_reason(e)) from None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
        raise ImageFileError(error_reason(e) if buf else "empty file") from None
    width, height = img.size
    check_pixels(width, height, max_pixels)  # the header only: nothing is decoded yet
    try:
        img.load()
        if "exif" in img.info:  # cheap test first: most pictures have none
            img = ImageOps.exif_transpose(img)
        return as_mode(img, channels)
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
        raise ImageFileError(error_reason(e)) from None


def error_reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    # Pillow names the file object it was given ("<_io.BytesIO object at 0x7f...>")
    text = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", text)
    first = text.split(" Stack trace")[0]
    return (first[:80] + "...") if len(first) > 80 else (first or type(e).__name__)


def choose_image_size(reader, sample: int = SIZE_SAMPLE, cap: int = MAX_AUTO_SIZE):
    """Size and channels for a set of pictures, from an evenly spread sample of them.

    Returns
    -------
    size : (int, int)
        Median height and median width of the sample, each capped at ``cap``.
    channels : int
        1 when every sampled picture is grey, else 3.
    """
    n = len(reader)
    picks = np.unique(np.linspace(0, n - 1, num=min(sample, n)).round().astype(np.int64))
    heights, widths, grey = [], [], []
    for i in picks.tolist():
        try:
            (w, h), g = reader.header(i)
        except Exception:  # corrupt files are counted when the pictures are decoded
            continue
        heights.append(h)
        widths.append(w)
        grey.append(g)
    if not heights:
        return None, 3
    size = (min(int(np.median(heights)), cap), min(int(np.median(widths)), cap))
    return size, 1 if all(grey) else 3


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


@dataclass(frozen=True)
class ImageOptions:
    """How pictures become arrays (from :class:`~gluon_triplet.config.Config`).

    Attributes
    ----------
    size : (int, int) or None
        Height, width after resize + centre crop; None: chosen from the data
        (:func:`choose_image_size`).
    channels : {1, 3} or None
        None: 1 when every sampled picture is grey, else 3.
    upscale : bool
        Enlarge pictures smaller than ``size`` (else they are an error).
    strict : bool
        Corrupt pictures are an error instead of being skipped with a warning.
    workers : int or None
        DataLoader worker processes that decode (None: the usable CPUs; 0: in-process).
    max_memory : float
        GiB: sets larger than this as float32 are streamed (decoded batch by batch, see
        :mod:`gluon_triplet.data.streaming`) instead of decoded into memory once.
    max_pixels : int
        Pictures whose header declares more pixels are skipped with a warning (``strict``:
        an error) before any decoder runs (:func:`check_pixels`).
    """

    size: Optional[Tuple[int, int]] = None
    channels: Optional[int] = None
    upscale: bool = True
    strict: bool = False
    workers: Optional[int] = None
    max_memory: float = 2.0
    max_pixels: int = MAX_PIXELS

    @classmethod
    def from_config(cls, config) -> ImageOptions:
        return cls(
            size=parse_image_size(getattr(config, "image_size", None)),
            channels=getattr(config, "image_channels", None),
            upscale=getattr(config, "upscale", True),
            strict=getattr(config, "strict", False),
            workers=getattr(config, "workers", None),
            max_memory=getattr(config, "max_memory", 2.0),
            max_pixels=getattr(config, "max_pixels", MAX_PIXELS),
        )
