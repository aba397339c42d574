"""A picture's size from its header, and the one pixel limit every decoding path applies
(:func:`check_pixels`) before OpenCV or Pillow decodes a pixel.

:func:`picture_size` reads PNG, JPEG, GIF, BMP and WebP headers itself; any other format
goes to Pillow's ``Image.open``, which parses the header only.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Callable, Tuple, Union

from ..errors import ImageFileError, TooManyPixels

__all__ = ["MAX_PIXELS", "check_pixels", "picture_size", "pillow_allows"]

#: The default pixel limit: Pillow's ``Image.MAX_IMAGE_PIXELS`` (a quarter GiB of RGB).
MAX_PIXELS = 89_478_485

_Read = Callable[[int, int], bytes]  # (offset, count) -> at most count bytes


def check_pixels(width: int, height: int, limit: int = MAX_PIXELS) -> None:
    """Refuse a picture of ``width`` x ``height`` above ``limit`` pixels.

    Raises
    ------
    TooManyPixels
        ``width * height > limit`` (an :class:`~gluon_triplet.errors.ImageFileError`).
    """
    pixels = int(width) * int(height)
    if pixels > limit:
        raise TooManyPixels(
            f"{width}x{height} is {pixels} pixels, above the limit of {limit} (--max-pixels)"
        )


def pillow_allows(limit: int) -> None:
    """Let Pillow open pictures up to ``limit`` pixels (they passed :func:`check_pixels`).

    Pillow warns above its ``Image.MAX_IMAGE_PIXELS`` and refuses above twice that; a
    larger ``limit`` raises that value to ``limit`` (never lowers it), so the one limit
    is ours.
    """
    from PIL import Image

    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < limit:
        Image.MAX_IMAGE_PIXELS = int(limit)


def picture_size(source: Union[bytes, bytearray, memoryview, str, os.PathLike]) -> Tuple[int, int]:
    """``(width, height)`` of an encoded picture, read from its header without decoding.

    Parameters
    ----------
    source : bytes or path
        The encoded picture, or its file (only the header is read).

    Raises
    ------
    ImageFileError
        Not a picture, or a header too short to hold the size.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _size(lambda pos, n: data[pos : pos + n], lambda: io.BytesIO(data))
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:

            def read(pos: int, n: int) -> bytes:
                f.seek(pos)
                return f.read(n)

            return _size(read, lambda: path)
    except OSError as e:
        raise ImageFileError(e.strerror or str(e)) from None


def _size(read: _Read, opener) -> Tuple[int, int]:
    head = read(0, 32)
    if not head:
        raise ImageFileError("empty file")
    for test, parse in _PARSERS:
        if test(head):
            try:
                return parse(read)
            except (struct.error, IndexError):
                raise ImageFileError("truncated header") from None
    return _pillow_size(opener())


def _png(read: _Read) -> Tuple[int, int]:
    head = read(0, 24)
    if head[12:16] != b"IHDR":
        raise ImageFileError("PNG without an IHDR chunk")
    return struct.unpack(">II", head[16:24])


# SOFn markers (n = 0-3, 5-7, 9-11, 13-15); C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(read: _Read) -> Tuple[int, int]:
    pos = 2
    while True:
        two = read(pos, 2)
        if len(two) < 2 or two[0] != 0xFF:
            raise ImageFileError("JPEG without a frame header (SOF)")
        marker = two[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            raise ImageFileError("JPEG without a frame header (SOF)")
        (length,) = struct.unpack(">H", read(pos + 2, 2))
        if marker in _SOF:
            height, width = struct.unpack(">HH", read(pos + 5, 4))
            return width, height
        pos += 2 + length


def _gif(read: _Read) -> Tuple[int, int]:
    # the logical screen, grown by the first frame when it reaches beyond (as Pillow does)
    width, height, flags = struct.unpack("<HHB", read(6, 5))
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        kind = read(pos, 1)
        if kind == b"!":  # an extension: label, then sub-blocks until an empty one
            pos += 2
            while True:
                n = read(pos, 1)
                if not n:
                    return width, height
                pos += 1 + n[0]
                if n[0] == 0:
                    break
        elif kind == b",":
            left, top, w, h = struct.unpack("<HHHH", read(pos + 1, 8))
            return max(width, left + w), max(height, top + h)
        else:  # trailer, or the end of a damaged file
            return width, height


def _bmp(read: _Read) -> Tuple[int, int]:
    (dib,) = struct.unpack("<I", read(14, 4))
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", read(18, 4))
    width, height = struct.unpack("<ii", read(18, 8))
    return abs(width), abs(height)  # negative height: rows stored top-down


def _webp(read: _Read) -> Tuple[int, int]:
    head = read(12, 18)
    kind = head[:4]
    if kind == b"VP8X":  # canvas size minus one, 24-bit each
        return (
            int.from_bytes(head[12:15], "little") + 1,
            int.from_bytes(head[15:18], "little") + 1,
        )
    if kind == b"VP8L":
        bits = int.from_bytes(head[9:13], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", head[14:18])
        return w & 0x3FFF, h & 0x3FFF
    raise ImageFileError(f"WebP with an unknown first chunk {kind!r}")


_PARSERS = (
    (lambda h: h[:8] == b"\x89PNG\r\n\x1a\n", _png),
    (lambda h: h[:2] == b"\xff\xd8", _jpeg),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda h: h[:2] == b"BM", _bmp),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", _webp),
)


def _pillow_size(fp) -> Tuple[int, int]:
    """Other formats: Pillow's ``open`` parses the header only."""
    from PIL import Image

    try:
        with Image.open(fp) as img:
            return img.size
    except Image.DecompressionBombError as e:  # beyond twice Pillow's own limit
        raise TooManyPixels(str(e)) from None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
        raise ImageFileError(" ".join(str(e).split())[:80] or type(e).__name__) from None
