"""One picture to pixels: the size and colour policy (:class:`ImageOptions`: resize to
cover, centre crop, grey or RGB) and decoding by Pillow."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import ImageFileError, TooManyPixels
from .headers import MAX_PIXELS, check_pixels, pillow_allows

__all__ = [
    "EPOCH_PIXELS",
    "GREY_MODES",
    "ImageOptions",
    "MAX_AUTO_SIZE",
    "MIN_AUTO_SIZE",
    "SIZE_SAMPLE",
    "as_mode",
    "choose_image_size",
    "decode_picture",
    "error_reason",
    "fit_epoch_pixels",
    "fit_picture",
    "parse_image_size",
]

#: Largest side the automatic ``--image-size`` picks (the CNN's cost grows with the area).
MAX_AUTO_SIZE = 64

#: Pixels (pictures x height x width) one training epoch may show at the automatic size:
#: an epoch of more pictures gets smaller ones (:func:`fit_epoch_pixels`).
EPOCH_PIXELS = 200_000_000

#: The automatic size is not lowered below this side to fit :data:`EPOCH_PIXELS`.
MIN_AUTO_SIZE = 32

#: How many pictures :func:`choose_image_size` looks at.
SIZE_SAMPLE = 300


# Pillow modes holding one grey channel (with or without alpha).
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


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


def fit_epoch_pixels(size, pictures: int, budget: int = EPOCH_PIXELS, floor: int = MIN_AUTO_SIZE):
    """``size`` made smaller, if need be, so that an epoch of ``pictures`` shows at most
    ``budget`` pixels.

    Parameters
    ----------
    size : (int, int)
        Height, width.
    pictures : int
        Pictures one training epoch shows.

    Returns
    -------
    (int, int)
        ``size`` when ``pictures * height * width <= budget``; else both sides scaled by
        one factor and rounded down to multiples of 8, none below ``floor`` (a side
        already at or below ``floor`` is kept), so the floor may leave it over budget.
    """
    h, w = (int(s) for s in size)
    if pictures * h * w <= budget:
        return (h, w)
    scale = math.sqrt(budget / (pictures * h * w))
    return tuple(s if s <= floor else max(floor, int(s * scale) // 8 * 8) for s in (h, w))


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
    pk : (int or None, int) or None
        P (None: automatic) and K of the training's P x K batches: an automatic ``size``
        is then kept within :data:`EPOCH_PIXELS` an epoch (:func:`fit_epoch_pixels`).
        None: the median size as it is.
    """

    size: Optional[Tuple[int, int]] = None
    channels: Optional[int] = None
    upscale: bool = True
    strict: bool = False
    workers: Optional[int] = None
    max_memory: float = 2.0
    max_pixels: int = MAX_PIXELS
    pk: Optional[Tuple[Optional[int], int]] = None

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
            pk=None
            if getattr(config, "miner", "offline") == "offline"
            else (config.pk_classes, config.pk_samples),
        )
