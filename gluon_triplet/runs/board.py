"""TensorBoard output through mxboard: scalar curves per epoch and the embedding projector.

:class:`BoardCallback` writes, into one run directory (a TensorBoard "run"):

* the epoch records of ``trainer.history`` as scalars ``train/<key>``, ``test/<key>`` and
  ``time/epoch_seconds``, one step per epoch;
* projector tensors that share labels and sprite, so the projector can switch between them:
  ``raw_input`` (the flattened input samples) and ``embedding`` (the learned embedding at the
  end of training, plus ``embedding_0000NN`` every ``projector_every`` epochs if asked). The
  sprite is written once, with ``raw_input``: every embedding tensor's entry points at it.

mxboard 0.1.0 writes what TensorBoard's projector plugin parses, but :func:`write_projector`
repairs three things the projector otherwise shows wrongly: ``projector_config.pbtxt`` is only
ever appended to, so rewriting a tensor lists it twice; the sprite is ``ceil(sqrt(N))`` tiles
wide but only as tall as needed, while the projector assumes a square atlas when picking
points; float pixels are truncated, not rounded, to uint8.

TensorBoard reads a run's projector config once, when it first sees the run; tensors written
later to a run it already knows appear after TensorBoard is restarted.
"""

from __future__ import annotations

import logging
import numbers
import os
import re

import numpy as np

from ..io import atomic_write_text
from ..training.callbacks import Callback
from .sprites import MAX_SPRITE_SIZE, _pad_sprite_square, _tiles_per_side, _to_numpy, sprite_images

__all__ = ["BoardCallback", "write_projector"]

logger = logging.getLogger("gluon_triplet")

PROJECTOR_CONFIG = "projector_config.pbtxt"

# The tag becomes a folder name and a quoted string in the pbtxt; a quote or a path separator
# would corrupt the config, and a corrupt config breaks the projector for every run.
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_FLUSH_SECS = 2


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


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class BoardCallback(Callback):
    """Scalars every epoch and projector tensors of a fixed sample set, for TensorBoard.

    Parameters
    ----------
    logdir : str
        The run directory; event files and projector files go straight into it.
    projector_x : (M, ...) array
        Samples shown in the projector, e.g. ``(M, 28, 28)`` images in [0, 1]; also what
        ``trainer.embed`` gets. Their pixels make the sprite when they look like images
        (see :func:`sprite_images`).
    projector_y : (M,) int array
        Their labels.
    class_names : sequence of str, optional
        Name of each label value, written instead of the number.
    projector_every : int
        Also write the embedding every this many epochs (``embedding_<epoch:06d>``);
        0 writes it only once, at the end of training.
    test_index : (M,) int array, optional
        Where the samples are in the trainer's test split (``projector_x`` is
        ``test_x[test_index]``): the final embedding is then the rows of the test split's
        whole evaluation, not a second pass (``trainer.embed``'s ``test_index``).
    """

    def __init__(
        self,
        logdir,
        projector_x,
        projector_y,
        class_names=None,
        projector_every=0,
        test_index=None,
    ):
        x = _to_numpy(projector_x)
        y = _to_numpy(projector_y)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(
                f"BoardCallback: projector_x must be (M, ...) with M >= 1, got shape {x.shape}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"BoardCallback: projector_y must be ({len(x)},) like projector_x, got shape "
                f"{y.shape}"
            )
        if isinstance(projector_every, bool) or not isinstance(projector_every, numbers.Integral):
            raise ValueError(
                f"BoardCallback: projector_every must be an int, got {projector_every!r}"
            )
        if projector_every < 0:
            raise ValueError(f"BoardCallback: projector_every must be >= 0, got {projector_every}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if y.dtype.kind not in "iu":
                raise ValueError(
                    f"BoardCallback: with class_names, projector_y must be ints, got {y.dtype}"
                )
            bad = (y < 0) | (y >= len(class_names))
            if bad.any():
                raise ValueError(
                    f"BoardCallback: label {y[bad][0]} has no name among "
                    f"{len(class_names)} class_names"
                )
            self.labels = [class_names[int(v)] for v in y]
        else:
            self.labels = [str(v.item()) for v in y]
        self.logdir = logdir
        self.projector_x = x
        self.projector_every = int(projector_every)
        self.test_index = None if test_index is None else np.asarray(test_index)
        if self.test_index is not None and self.test_index.shape != (len(x),):
            raise ValueError(
                f"BoardCallback: test_index must be ({len(x)},) like projector_x, got shape "
                f"{self.test_index.shape}"
            )
        self.sprite = sprite_images(x)
        if self.sprite is None:
            logger.info("projector: no sprite for samples of shape %s (not images)", x.shape)
        # The folder whose sprite.png the later tensors point at: the sprite shows the same
        # samples all run, and a large one takes minutes to write (docs/projector.md).
        self._sprite_folder = None

        self._writer = None

    def _open(self):
        from mxboard import SummaryWriter

        # mxboard names event files by the second and truncates an existing one: a run
        # resumed within the same second would lose its first part's events.
        present = os.listdir(self.logdir) if os.path.isdir(self.logdir) else []
        earlier = [f for f in present if ".tfevents." in f]
        self._writer = SummaryWriter(
            logdir=self.logdir,
            flush_secs=_FLUSH_SECS,
            filename_suffix=f".part{len(earlier) + 1}" if earlier else None,
            verbose=False,
        )
        # Right after the event file appears: TensorBoard reads a run's projector config
        # once, when it first sees the run.
        if os.path.isdir(os.path.join(self.logdir, "raw_input")):
            # A resumed run: written by its first part, and the same samples.
            if os.path.isfile(os.path.join(self.logdir, "raw_input", "sprite.png")):
                self._sprite_folder = "raw_input" if self.sprite is not None else None
            return
        raw = self.projector_x.reshape(len(self.projector_x), -1)
        self._write("raw_input", raw)

    def _write(self, tag, emb, global_step=None):
        """One projector tensor; the first with a sprite writes it, the next point at it."""
        folder = write_projector(
            self._writer,
            tag,
            emb,
            self.labels,
            self.sprite,
            global_step=global_step,
            sprite_of=self._sprite_folder,
        )
        if self.sprite is not None and self._sprite_folder is None:
            self._sprite_folder = folder
        return folder

    def _write_scalars(self, record):
        step = int(record["epoch"])
        for split in ("train", "val", "test"):
            for key, value in (record.get(split) or {}).items():
                if _is_number(value):
                    self._writer.add_scalar(f"{split}/{key}", float(value), global_step=step)
        # epoch 0 is the untrained net: it has test metrics but took no training time
        if step > 0 and _is_number(record.get("time")):
            self._writer.add_scalar("time/epoch_seconds", float(record["time"]), global_step=step)

    def _write_embedding(self, trainer, global_step):
        where = {} if self.test_index is None else {"test_index": self.test_index}
        emb = np.asarray(trainer.embed(self.projector_x, **where), dtype=np.float32)
        return self._write("embedding", emb, global_step=global_step)

    def on_train_begin(self, trainer):
        self._open()
        history = getattr(trainer, "history", None)
        # The trainer records the untrained net as epoch 0 before this hook: the start of
        # every test curve.
        if history and history[-1].get("epoch") == 0:
            self._write_scalars(history[-1])
        self._writer.flush()

    def on_epoch_end(self, trainer):
        if self._writer is None:
            self._open()
        record = trainer.history[-1]
        self._write_scalars(record)
        epoch = int(record["epoch"])
        if self.projector_every and epoch % self.projector_every == 0:
            self._write_embedding(trainer, global_step=epoch)
        self._writer.flush()

    def close(self):
        """Flush and close the event file, e.g. after an interrupted or failed run."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def on_train_end(self, trainer):
        if self._writer is None:
            self._open()
        try:
            self._write_embedding(trainer, global_step=None)
        finally:
            self._writer.flush()
            self._writer.close()
            self._writer = None
