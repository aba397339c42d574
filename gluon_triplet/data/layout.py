"""4-D array layouts: ``(N, H, W, C)`` or ``(N, C, H, W)`` arrays become the package's
layout, ``(N, H, W)`` for one channel and ``(N, C, H, W)`` for colour."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

import numpy as np

from ..errors import DataError

__all__ = [
    "apply_layout",
    "array_layout",
    "to_canonical_layout",
]

logger = logging.getLogger("gluon_triplet")


def to_canonical_layout(x: np.ndarray, where: str = "data") -> np.ndarray:
    """4-D samples in the package's layout: ``(N, H, W)`` for one channel, else ``(N, C, H, W)``.

    Channels-last ``(N, H, W, C)`` (NumPy, Keras, Pillow) and channels-first ``(N, C, H, W)``
    (MXNet) are told apart by which axis has 1, 3 or 4 entries; when both could (e.g.
    ``(N, 3, 3, 3)``) the channels-last reading wins unless only the first is square. Alpha
    (a 4th channel) is dropped. Arrays of other dimensions are returned unchanged.

    Raises
    ------
    DataError
        A 4-D array whose second and last axes both differ from 1, 3 and 4.
    """
    layout = array_layout(x.shape, where)
    if layout is None:
        return x
    return apply_layout(x, layout)


def array_layout(shape: Tuple[int, ...], where: str = "data") -> Optional[Tuple[bool, int]]:
    """``(channels_last, channels)`` of 4-D samples of ``shape`` (logged), None for other
    dimensions; the rule of :func:`to_canonical_layout`, from the shape alone.

    Raises
    ------
    DataError
        A 4-D shape whose second and last axes both differ from 1, 3 and 4.
    """
    if len(shape) != 4:
        return None
    n, a, b, c = shape
    last, first = c in (1, 3, 4), a in (1, 3, 4)
    if last and first:
        last = not (b == c and a != b)  # (N, 3, 32, 32) is channels-first, (N, 32, 32, 3) last
    if not (last or first):
        raise DataError(
            f"{where}: 4-D samples {tuple(shape)} are neither channels-last (N, H, W, C) nor "
            "channels-first (N, C, H, W) with C in 1, 3, 4"
        )
    channels = c if last else a
    layout = "channels-last (N, H, W, C)" if last else "channels-first (N, C, H, W)"
    hw = (a, b) if last else (b, c)
    seen, out = (channels, *hw), hw if channels == 1 else (min(channels, 3), *hw)
    note = ", alpha dropped" if channels == 4 else ""
    logger.info("%s: %s samples %s read as %s%s", where, layout, seen, out, note)
    return last, channels


def apply_layout(x: np.ndarray, layout: Tuple[bool, int]) -> np.ndarray:
    """4-D samples ``x`` turned into the package's layout (see :func:`array_layout`)."""
    last, channels = layout
    if last:
        x = x.transpose(0, 3, 1, 2)
    if channels == 4:
        x = x[:, :3]
    return np.ascontiguousarray(x[:, 0] if channels == 1 else x)
