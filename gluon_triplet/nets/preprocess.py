"""Picture bytes to a model's input, exactly as training and ``embed image:`` decode them.

An export records how its model wants pictures in ``export.json``'s ``"preprocess"`` entry
(:func:`preprocess_spec`); :func:`preprocess` applies it to the bytes of one picture file::

    x = preprocess(open("shoe.jpg", "rb").read(), "served")   # (1, *input shape) float32
    emb = session.run(None, {"data": x})[0]

The policy is the package's own, run by the same code (:class:`~gluon_triplet.data.decoding.
DecodedImages`, which decodes every ``folder:``, ``rec:`` and ``image:`` picture): EXIF
orientation applied; converted to one grey channel or RGB (alpha dropped); resized with
bilinear filtering so that it *covers* the model's height x width, aspect ratio kept, then
centre-cropped to it; pixels scaled to float32 in [0, 1] (``value / 255``); laid out as the
model's input (a channel axis added for grey pictures, repeated three times for a backbone
that takes RGB). Any mean/std normalisation is inside the exported graph.

It needs Pillow and numpy only (no MXNet), and checks the picture's size from its header
before decoding it (:mod:`gluon_triplet.data.headers`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..data.headers import MAX_PIXELS
from ..errors import ImageFileError, TooManyPixels

__all__ = ["preprocess", "preprocess_spec", "read_preprocess_spec"]

_SPEC_KEYS = ("size", "channels", "input_shape")


def preprocess_spec(
    sample_shape: Sequence[int], input_shape: Sequence[int], upscale: bool = True
) -> Optional[Dict[str, Any]]:
    """The ``"preprocess"`` entry of ``export.json`` for a model of picture samples.

    Parameters
    ----------
    sample_shape : (H, W) or (C, H, W)
        One decoded sample as the run's data held it (``Config.input_shape``).
    input_shape : sequence of int
        One sample as the exported graph takes it, without the batch axis.
    upscale : bool
        The run's ``upscale``: smaller pictures are enlarged (else refused).

    Returns
    -------
    dict or None
        None when the samples are not pictures (e.g. feature vectors).
    """
    sample = tuple(int(s) for s in sample_shape)
    graph = tuple(int(s) for s in input_shape)
    if len(sample) == 2:
        channels = 1
    elif len(sample) == 3 and sample[0] in (1, 3):
        channels = sample[0]
    else:
        return None
    if int(np.prod(graph)) not in (int(np.prod(sample)), 3 * int(np.prod(sample[-2:]))):
        return None
    return {
        "size": list(sample[-2:]),
        "channels": channels,
        "color": "grey" if channels == 1 else "rgb",
        "exif_orientation": True,
        "resize": "cover, aspect ratio kept, bilinear",
        "crop": "centre",
        "upscale": bool(upscale),
        "scale": "float32 value / 255, in [0, 1]",
        "input_shape": list(graph),
    }


def read_preprocess_spec(spec: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A checked preprocess spec from an export directory, its ``export.json`` content, or
    the ``"preprocess"`` entry itself.

    Raises
    ------
    ValueError
        The export records no preprocessing (a model of vectors, or an export made before
        it was recorded), or the entry is malformed.
    """
    where = "the spec"
    if isinstance(spec, (str, os.PathLike)):
        where = os.path.join(os.fspath(spec), "export.json")
        try:
            with open(where, encoding="utf-8") as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {where}: {e}") from None
    if isinstance(spec, Mapping) and "preprocess" in spec:
        spec = spec["preprocess"]
    if not isinstance(spec, Mapping) or any(k not in spec for k in _SPEC_KEYS):
        raise ValueError(
            f"{where} records no picture preprocessing (a model of vectors, or an export "
            "older than this version: export the run again)"
        )
    size = tuple(int(s) for s in spec["size"])
    if len(size) != 2 or min(size) < 1 or int(spec["channels"]) not in (1, 3):
        raise ValueError(f"{where}: malformed preprocess entry {dict(spec)}")
    return dict(spec)


def _plain(reason: str) -> str:
    # Pillow names the in-memory file object; the reader of an HTTP answer has no use for it
    return re.sub(r"cannot identify image file <[^>]*>", "no format Pillow reads", reason)


class _Bytes:
    """The reader interface of :class:`~gluon_triplet.data.decoding.DecodedImages` over
    one picture held in memory."""

    def __init__(self, data: bytes):
        self.data = data

    def __len__(self) -> int:
        return 1

    def encoded(self, i: int) -> bytes:
        return self.data

    def name(self, i: int) -> str:
        return "<upload>"


def preprocess(
    image_bytes: bytes,
    spec: Union[str, Mapping[str, Any]],
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """One picture file's bytes as the model's input, ``(1, *input_shape)`` float32.

    Parameters
    ----------
    image_bytes : bytes
        A whole picture file (PNG, JPEG, GIF, WebP, BMP, TIFF, ... anything Pillow reads).
    spec : str or dict
        An export directory, its ``export.json`` content, or its ``"preprocess"`` entry.
    max_pixels : int
        Pictures with more pixels are refused from their header, before decoding
        (default: the package's limit, ``gluon_triplet.data.headers.MAX_PIXELS``).

    Raises
    ------
    ImageFileError
        Not a picture, corrupt, too large, or smaller than the model's size when the run
        did not upscale.
    """
    from ..data.decoding import DecodedImages

    spec = read_preprocess_spec(spec)
    size, channels, upscale = spec["size"], spec["channels"], spec["upscale"]
    decoded = DecodedImages(_Bytes(image_bytes), size, channels, upscale, max_pixels=max_pixels)
    try:
        pixels = decoded.picture(0)  # (H, W) or (C, H, W) uint8, as training decoded it
    except TooManyPixels as e:
        raise TooManyPixels(f"the picture is too large: {e}") from None
    except ImageFileError as e:
        raise ImageFileError(f"not a usable picture: {_plain(str(e))}") from None
    x = pixels.astype(np.float32)
    x /= 255
    shape = tuple(int(s) for s in spec["input_shape"])
    if x.size != int(np.prod(shape)):  # grey picture, RGB model (a backbone)
        x = np.repeat(x.reshape(1, *x.shape[-2:]), 3, axis=0)
    return x.reshape(1, *shape)
