"""TensorBoard's embedding projector: :func:`write_projector` writes one tensor.

mxboard 0.1.0 writes what TensorBoard's projector plugin parses, but :func:`write_projector`
repairs three things the projector otherwise shows wrongly: ``projector_config.pbtxt`` is only
ever appended to, so rewriting a tensor lists it twice; the sprite is ``ceil(sqrt(N))`` tiles
wide but only as tall as needed, while the projector assumes a square atlas when picking
points; float pixels are truncated, not rounded, to uint8.
"""

from __future__ import annotations

import logging
import numbers
import os
import re

import numpy as np

from ..io import atomic_write_text
from .sprites import MAX_SPRITE_SIZE, _pad_sprite_square, _tiles_per_side, _to_numpy

__all__ = ["PROJECTOR_CONFIG", "write_projector"]

logger = logging.getLogger("gluon_triplet")

PROJECTOR_CONFIG = "projector_config.pbtxt"

# The tag becomes a folder name and a quoted string in the pbtxt; a quote or a path separator
# would corrupt the config, and a corrupt config breaks the projector for every run.
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _clean_label(value):
    # The projector reads one label per line, takes a first line with a tab as a header and
    # skips blank lines; any of those would shift every label after it.
    text = re.sub(r"[\t\r\n]+", " ", str(value)).strip()
    return text if text else "(empty)"


def _tidy_projector_config(logdir, shared_sprite=None):
    """Keep one entry per tensor name in the run's pbtxt: the newest, in the first's place.

    ``shared_sprite`` ``(name, image_path, (width, height))``: tensor ``name``'s newest
    entry gets that sprite (mxboard writes an entry's sprite only with its images).
    """
    from google.protobuf import text_format

    # Only this proto of TensorBoard's: tensorboard.compat.proto (events, summaries) defines
    # the same message names as mxboard's protos and cannot be imported beside mxboard.
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    path = os.path.join(logdir, PROJECTOR_CONFIG)
    with open(path) as f:
        text = f.read()
    config = ProjectorConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        logger.warning("%s does not parse; TensorBoard's projector will fail on it: %s", path, e)
        return
    latest, order = {}, []
    for emb in config.embeddings:
        if emb.tensor_name not in latest:
            order.append(emb.tensor_name)
        latest[emb.tensor_name] = emb
    if shared_sprite is not None:
        name, image_path, dims = shared_sprite
        sprite = latest[name].sprite
        sprite.image_path = image_path
        del sprite.single_image_dim[:]
        sprite.single_image_dim.extend(dims)
    elif len(order) == len(config.embeddings):
        return
    kept = ProjectorConfig()
    kept.CopyFrom(config)
    del kept.embeddings[:]
    for name in order:
        kept.embeddings.add().CopyFrom(latest[name])
    atomic_write_text(path, text_format.MessageToString(kept))


def write_projector(writer, tag, embedding, labels, images=None, global_step=None, sprite_of=None):
    """Write one tensor for TensorBoard's embedding projector.

    Writes ``tensors.tsv``, ``metadata.tsv`` (one label per line) and ``sprite.png`` into
    ``<logdir>/<folder>`` with ``writer.add_embedding`` and adds the tensor to
    ``<logdir>/projector_config.pbtxt``, replacing an earlier entry of the same name.

    Parameters
    ----------
    writer : mxboard.SummaryWriter
    tag : str
        Letters, digits, ``_``, ``.``, ``-``.
    embedding : (M, D) array-like
        Finite values; written as float32.
    labels : sequence of M ints or str, or None
        Written with ``str``; tabs and newlines become spaces.
    images : (M, C, H, W) array-like, optional
        ``C`` 1 or 3, float in [0, 1] or uint8 (see :func:`sprite_images`).
    global_step : int, optional
        When given, the folder and tensor name get the suffix ``_<global_step:06d>``.
    sprite_of : str, optional
        With ``images``: the folder (under the writer's logdir) of a tensor written earlier
        whose ``sprite.png`` shows these same images. This tensor's entry points at that
        sprite instead of writing another copy (``images`` still give the tile size).

    Returns
    -------
    str
        The tensor's folder under the writer's logdir, which is also its name in the projector.

    Raises
    ------
    ValueError
        On a bad tag or step, shapes and values that do not fit together, or no sprite in
        ``sprite_of``.
    """
    _check_tag_and_step(tag, global_step)
    embedding = _checked_embedding(embedding)
    m = embedding.shape[0]
    if labels is not None:
        labels = _checked_labels(labels, m)
    if images is not None:
        images = _checked_images(images, m)
    logdir = writer.get_logdir()
    shared = None
    if images is not None and sprite_of is not None:
        shared = _shared_sprite(logdir, sprite_of, images)

    writer.add_embedding(
        tag,
        embedding,
        labels=labels,
        images=None if shared else images,
        global_step=global_step,
    )

    # Same rule as mxboard's folder naming, which is not public API.
    folder = tag if global_step is None else f"{tag}_{global_step:06d}"
    if images is not None and shared is None:
        per_side = _tiles_per_side(m)
        _pad_sprite_square(
            os.path.join(logdir, folder, "sprite.png"),
            per_side * images.shape[3],
            per_side * images.shape[2],
        )
    _tidy_projector_config(logdir, (folder, *shared) if shared else None)
    return folder


def _check_tag_and_step(tag, global_step):
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise ValueError(
            f"write_projector: tag must be letters, digits, '_', '.', '-', got {tag!r}"
        )
    if global_step is not None and (
        isinstance(global_step, bool) or not isinstance(global_step, numbers.Integral)
    ):
        raise ValueError(f"write_projector: global_step must be an int, got {global_step!r}")
    if global_step is not None and global_step < 0:
        raise ValueError(f"write_projector: global_step must be >= 0, got {global_step}")


def _checked_embedding(embedding):
    """``(M, D)`` finite float32, or ValueError."""
    embedding = _to_numpy(embedding)
    if embedding.ndim != 2 or embedding.shape[0] == 0 or embedding.shape[1] == 0:
        raise ValueError(
            f"write_projector: embedding must be (M, D) with M, D >= 1, got shape {embedding.shape}"
        )
    if embedding.dtype.kind not in "buif":
        raise ValueError(f"write_projector: embedding must be numeric, got {embedding.dtype}")
    embedding = embedding.astype(np.float32)
    if not np.isfinite(embedding).all():
        raise ValueError("write_projector: embedding has NaN or inf values")
    return embedding


def _checked_labels(labels, m):
    """``m`` labels as one-line strings, or ValueError."""
    if hasattr(labels, "asnumpy"):
        labels = labels.asnumpy()
    if np.ndim(labels) != 1:
        raise ValueError(f"write_projector: labels must be 1-D, got shape {np.shape(labels)}")
    labels = [_clean_label(v) for v in labels]
    if len(labels) != m:
        raise ValueError(f"write_projector: {len(labels)} labels for an embedding of {m} rows")
    return labels


def _checked_images(images, m):
    """``(m, C, H, W)`` uint8 pictures that fit one sprite, or ValueError."""
    images = _to_numpy(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"write_projector: images must be (M, C, H, W) with C 1 or 3, got shape {images.shape}"
        )
    if images.shape[0] != m:
        raise ValueError(f"write_projector: {images.shape[0]} images for an embedding of {m} rows")
    height, width = images.shape[2:]
    per_side = _tiles_per_side(m)
    if per_side * max(height, width) > MAX_SPRITE_SIZE:
        raise ValueError(
            f"write_projector: a sprite of {m} images of {height}x{width} would be "
            f"{per_side * width}x{per_side * height} px, over the projector's "
            f"{MAX_SPRITE_SIZE} px limit; sprite_images makes thumbnails that fit"
        )
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
        if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise ValueError("write_projector: float images must be in [0, 1]")
        # mxboard truncates floats to uint8; rounding keeps a pixel within 0.5/255
        images = np.rint(images * 255).astype(np.uint8)
    return images


def _shared_sprite(logdir, sprite_of, images):
    """``(image_path, (width, height))`` of the earlier sprite in ``sprite_of``."""
    if not isinstance(sprite_of, str) or not _TAG_RE.match(sprite_of):
        raise ValueError(f"write_projector: sprite_of must be a folder name, got {sprite_of!r}")
    if not os.path.isfile(os.path.join(logdir, sprite_of, "sprite.png")):
        raise ValueError(f"write_projector: no sprite.png in {sprite_of!r} to point at")
    # The projector resolves a relative image path against the pbtxt's directory.
    return f"{sprite_of}/sprite.png", (images.shape[3], images.shape[2])
