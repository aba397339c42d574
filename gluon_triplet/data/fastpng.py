"""PNG bytes to pixels in one C call (OpenCV, when installed), equal to Pillow's pixels.

:func:`decode_png` takes only the PNGs for which both decoders give the same pixels (PNG
is lossless; no colour conversion) and returns None for every other picture (JPEG and
other formats, palette, 16-bit, transparency, EXIF orientation, colour to grey), which
Pillow then decodes. Without ``opencv-python-headless`` (``pip install
'gluon-triplet[fast]'``) it always returns None.
"""

from __future__ import annotations

import functools
import struct
import zlib
from types import ModuleType
from typing import Optional

import numpy as np

__all__ = ["PNG_SIGNATURE", "available", "decode_png", "png_layout"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Colour types of the IHDR chunk this module decodes: grey, RGB, grey + alpha, RGBA.
_GREY, _RGB, _GREY_ALPHA, _RGBA = 0, 2, 4, 6
# Chunks after which Pillow's pixels would differ from the stored ones, or from what
# OpenCV returns: transparency (OpenCV may add an alpha channel) and EXIF orientation
# (gluon-triplet applies it; OpenCV's IMREAD_UNCHANGED does not); and the ICC profile,
# which libpng checks and complains about on stderr (the pixels are the same: neither
# decoder applies the profile).
_PILLOW_ONLY_CHUNKS = (b"tRNS", b"eXIf", b"iCCP")


@functools.lru_cache(maxsize=1)
def _cv2() -> Optional[ModuleType]:
    try:
        import cv2
    except Exception:  # not installed, or a build that cannot load (missing libGL ...)
        return None
    return cv2


def available() -> bool:
    """Whether OpenCV can be imported (then plain 8-bit PNGs bypass Pillow)."""
    return _cv2() is not None


def png_layout(buf: bytes) -> Optional[int]:
    """The channels of a plain 8-bit PNG (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA), else None.

    None for anything else: not a PNG, another bit depth, a palette, a chunk after which
    Pillow's pixels differ (``tRNS``, ``eXIf``), and any file libpng would complain about
    on stderr (``iCCP``, a bad CRC, a broken chunk chain, no ``IEND``).
    """
    # signature (8), IHDR length (4), "IHDR" (4), width, height (4 + 4), depth, colour type
    if len(buf) < 33 or buf[:8] != PNG_SIGNATURE or buf[12:16] != b"IHDR":
        return None
    depth, colour = struct.unpack_from("BB", buf, 24)
    if depth != 8 or colour not in (_GREY, _RGB, _GREY_ALPHA, _RGBA):
        return None
    if not _chunks_sound(buf):
        return None
    return {_GREY: 1, _GREY_ALPHA: 2, _RGB: 3, _RGBA: 4}[colour]


def _chunks_sound(buf: bytes) -> bool:
    """Every chunk whole, with the right CRC, none of ``_PILLOW_ONLY_CHUNKS``, ending in
    ``IEND``: the PNGs libpng decodes without a word."""
    pos, end = 8, len(buf)
    view = memoryview(buf)
    while pos + 12 <= end:
        length, kind = struct.unpack_from(">I4s", buf, pos)
        stop = pos + 8 + length
        if stop + 4 > end or kind in _PILLOW_ONLY_CHUNKS:
            return False
        (crc,) = struct.unpack_from(">I", buf, stop)
        if zlib.crc32(view[pos + 4 : stop]) != crc:
            return False
        if kind == b"IEND":
            return True
        pos = stop + 4
    return False


def decode_png(buf: bytes, channels: int) -> Optional[np.ndarray]:
    """Decode a plain 8-bit PNG as Pillow would for ``channels``, or None (use Pillow).

    The result equals ``np.asarray(Image.open(buf).convert(mode))`` with mode ``L``
    (``channels`` 1) or ``RGB`` (3), bit for bit: alpha is dropped as Pillow's conversion
    drops it, and grey is repeated to RGB as Pillow repeats it. Colour to grey is left to
    Pillow (its rounding is its own), as is every PNG :func:`png_layout` refuses and
    any that OpenCV cannot decode (Pillow then gives the error message).

    Parameters
    ----------
    buf : bytes
        The encoded picture (any format: only PNG is taken).
    channels : {1, 3}

    Returns
    -------
    (H, W) uint8 (``channels`` 1), (H, W, 3) uint8 (``channels`` 3), or None
    """
    cv2 = _cv2()
    if cv2 is None:
        return None
    stored = png_layout(buf)
    if stored is None or (channels == 1 and stored > 2):
        return None
    arr = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint8:
        return None
    have = 1 if arr.ndim == 2 else arr.shape[2]
    # OpenCV gives grey + alpha as BGRA; its grey channel is then repeated in B, G, R.
    if have != {1: 1, 2: 4, 3: 3, 4: 4}[stored]:
        return None
    if stored == 2:
        arr = arr[..., 0]
        have = 1
    if channels == 1:
        return arr
    if have == 1:
        return np.repeat(arr[..., None], 3, axis=2)
    return arr[..., 2::-1]  # BGR(A) -> RGB, alpha dropped
