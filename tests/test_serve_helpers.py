"""Tiny pictures for the serve and preprocess tests."""

import io

import numpy as np
from PIL import Image


def picture(rng, colour, size, mode="RGB"):
    """A coloured square on a noisy background, ``size`` = (width, height)."""
    w, h = size
    a = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
    a[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = colour
    img = Image.fromarray(a, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def encode(img, fmt="PNG"):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
