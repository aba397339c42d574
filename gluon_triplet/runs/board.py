"""TensorBoard output through mxboard: scalar curves per epoch and the embedding projector.

:class:`BoardCallback` writes, into one run directory (a TensorBoard "run"):

* the epoch records of ``trainer.history`` as scalars ``train/<key>``, ``test/<key>`` and
  ``time/epoch_seconds``, one step per epoch;
* projector tensors that share labels and sprite, so the projector can switch between them:
  ``raw_input`` (the flattened input samples) and ``embedding`` (the learned embedding at the
  end of training, plus ``embedding_0000NN`` every ``projector_every`` epochs if asked). The
  sprite is written once, with ``raw_input``: every embedding tensor's entry points at it.

:func:`~.projector.write_projector` writes each projector tensor.

TensorBoard reads a run's projector config once, when it first sees the run; tensors written
later to a run it already knows appear after TensorBoard is restarted.
"""

from __future__ import annotations

import logging
import numbers
import os

import numpy as np

from ..training.callbacks import Callback
from .projector import write_projector
from .sprites import _to_numpy, sprite_images

__all__ = ["BoardCallback", "write_projector"]

logger = logging.getLogger("gluon_triplet")

_FLUSH_SECS = 2


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
