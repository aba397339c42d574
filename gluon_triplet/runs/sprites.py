"""The pictures of TensorBoard's projector sprite, a square atlas of every sample
(:func:`~gluon_triplet.runs.board.write_projector` writes it)."""

from __future__ import annotations

import logging
import math

import numpy as np

from ..io import atomic_save

__all__ = ["MAX_SPRITE_SIZE", "sprite_images"]

logger = logging.getLogger("gluon_triplet")

#: Largest sprite side in pixels; the projector front-end refuses bigger sprites.
MAX_SPRITE_SIZE = 8192


def _tiles_per_side(n):
    """``ceil(sqrt(n))``, exactly, for ``n >= 1``."""
    return math.isqrt(n - 1) + 1


def _to_numpy(x):
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


def sprite_images(x, max_size: int = MAX_SPRITE_SIZE):
    """Images for the projector's sprite, or None when ``x`` does not look like images.

    When ``ceil(sqrt(N))`` tiles a side would exceed ``max_size`` pixels, each picture
    becomes a thumbnail (aspect kept, centred on black) in a square cell of
    ``max_size // ceil(sqrt(N))`` pixels.

    Parameters
    ----------
    x : array-like
        ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` 1 or 3 images, or
        ``(N, D)`` flattened square single-channel images (``D = S * S``, e.g. 784). Pixels
        are expected in [0, 1]; uint8 is taken as it is and other ranges are min-max
        rescaled as a whole.
    max_size : int
        Largest sprite side in pixels (the projector's limit by default).

    Returns
    -------
    (N, C, H', W') uint8, or None
        NCHW, as mxboard wants; ``(H', W') = (H, W)`` when the sprite fits, else square
        thumbnail cells. Float pixels are rounded to uint8 (mxboard would truncate them).
        None for other shapes, non-finite pixels, or more samples than ``max_size ** 2``
        (a cell would be under one pixel).
    """
    x = _to_numpy(x)
    if x.ndim < 2 or x.shape[0] == 0 or x.dtype.kind not in "buif":
        return None
    n = x.shape[0]
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side < 2 or side * side != x.shape[1]:
            return None
        images = x.reshape(n, 1, side, side)
    elif x.ndim == 3:
        images = x[:, None]
    elif x.ndim == 4:
        # MXNet's own layout wins when both readings fit, e.g. (N, 3, 3, 3)
        if x.shape[1] in (1, 3):
            images = x
        elif x.shape[3] in (1, 3):
            images = x.transpose(0, 3, 1, 2)
        else:
            return None
    else:
        return None
    height, width = images.shape[2:]
    if height == 0 or width == 0:
        return None
    cell = max_size // _tiles_per_side(n)
    if cell < 1:
        return None
    if images.dtype == np.uint8:
        pixels = np.ascontiguousarray(images)
    else:
        images = images.astype(np.float32)
        if not np.isfinite(images).all():
            return None
        lo, hi = float(images.min()), float(images.max())
        if lo < 0 or hi > 1:
            # standardised inputs still make a readable picture once stretched back to [0, 1]
            images = (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)
        pixels = np.rint(images * 255).astype(np.uint8)
    if max(height, width) <= cell:
        return pixels
    logger.info(
        "projector: the sprite shows %d pictures of %dx%d as %dx%d thumbnails (a sprite is "
        "at most %d px a side)",
        n,
        height,
        width,
        cell,
        cell,
        max_size,
    )
    return _thumbnails(pixels, cell)


def _thumbnails(pixels, cell):
    """``(N, C, H, W) uint8`` -> ``(N, C, cell, cell) uint8``: each picture resized so its
    longer side is ``cell`` (aspect kept), centred on black."""
    from PIL import Image

    n, channels, height, width = pixels.shape
    scale = cell / max(height, width)
    th, tw = max(1, min(cell, round(height * scale))), max(1, min(cell, round(width * scale)))
    top, left = (cell - th) // 2, (cell - tw) // 2
    out = np.zeros((n, channels, cell, cell), np.uint8)
    for i in range(n):  # LANCZOS averages what it shrinks: detail blurs, never aliases
        rgb = channels == 3
        picture = Image.fromarray(pixels[i].transpose(1, 2, 0) if rgb else pixels[i, 0])
        small = np.asarray(picture.resize((tw, th), Image.LANCZOS, reducing_gap=2.0))
        out[i, :, top : top + th, left : left + tw] = small.transpose(2, 0, 1) if rgb else small
    return out


def _pad_sprite_square(path, side_w, side_h):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
    if im.size == (side_w, side_h):
        return
    canvas = Image.new(im.mode, (side_w, side_h))
    canvas.paste(im, (0, 0))
    atomic_save(path, lambda tmp: canvas.save(tmp, format="PNG"))
