"""The run's PNG pictures as a callback: :class:`PlotCallback` writes
:data:`~gluon_triplet.runs.plots.PLOT_FILES` into the run directory at the end of training
(see :mod:`gluon_triplet.runs.plots` for what each shows).

t-SNE of the final embedding runs in a second thread (mostly outside the GIL, on one core)
while the other pictures are drawn: matplotlib draws in one thread at a time. That starts
after the final clustering and the raw-pixel baseline, whose float rounding would change
if scikit-learn set the process's BLAS thread count beside them.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..training.callbacks import Callback
from .plots import pick_epochs, plot_curves, plot_pca_grid, plot_scatter
from .projections import pca_2d, tsne_2d

__all__ = ["PlotCallback"]

logger = logging.getLogger("gluon_triplet")


def _align_signs(points, previous):
    """Flip PCA axes to agree with the previous frame: PCA signs are arbitrary, and a
    mirrored frame would hide how the clusters move."""
    if previous is None:
        return points
    points = points.copy()
    for k in range(2):
        if float(points[:, k] @ previous[:, k]) < 0:
            points[:, k] = -points[:, k]
    return points


class PlotCallback(Callback):
    """Writes the PNGs of :data:`PLOT_FILES` into ``run_dir`` at the end of training.

    Parameters
    ----------
    run_dir : str
    projector_x : (M, ...) array, optional
        The sample to draw (e.g. the projector's); without it only ``curves.png`` is written.
    projector_y : (M,) labels, optional
    class_names : sequence of str, optional
        Name of each integer label value.
    baseline : dict, optional
        Test metrics of the raw pixels, dashed in ``curves.png``.
    tsne : bool
        Also write ``tsne.png`` (a few seconds for 1000 points).
    seed : int
        t-SNE's random state.
    max_panels : int
        At most this many panels in ``pca-epochs.png``; every epoch when they fit.
    test_index : (M,) int array, optional
        Where the sample is in the trainer's test split (``projector_x`` is
        ``test_x[test_index]``): after the last epoch its embedding is then the rows of
        the test split's whole evaluation, not another pass (``trainer.embed``'s
        ``test_index``).
    """

    def __init__(
        self,
        run_dir,
        projector_x=None,
        projector_y=None,
        class_names=None,
        baseline=None,
        tsne=True,
        seed=0,
        max_panels=20,
        test_index=None,
    ):
        if (projector_x is None) != (projector_y is None):
            raise ValueError("PlotCallback: give both projector_x and projector_y, or neither")
        if projector_x is not None:
            x = np.asarray(projector_x)
            y = np.asarray(projector_y)
            if x.ndim < 2 or len(x) < 2 or y.shape != (len(x),):
                raise ValueError(
                    "PlotCallback: projector_x must be (M, ...) with M >= 2 and projector_y "
                    f"(M,), got shapes {x.shape} and {y.shape}"
                )
            projector_x, projector_y = x, y
        self.run_dir = run_dir
        self.projector_x = projector_x
        self.projector_y = projector_y
        self.class_names = class_names
        self.baseline = baseline
        self.tsne = tsne
        self.seed = seed
        self.max_panels = max_panels
        self.test_index = None if test_index is None else np.asarray(test_index)
        if self.test_index is not None and (
            projector_x is None or self.test_index.shape != (len(projector_x),)
        ):
            raise ValueError("PlotCallback: test_index must be (M,) like projector_x")
        self.frames = []
        self.written = []

    def _snapshot(self, trainer):
        if self.projector_x is None or not trainer.history:
            return
        points = pca_2d(self._embed(trainer))
        previous = self.frames[-1][1] if self.frames else None
        self.frames.append((int(trainer.history[-1]["epoch"]), _align_signs(points, previous)))

    def _embed(self, trainer):
        where = {} if self.test_index is None else {"test_index": self.test_index}
        return trainer.embed(self.projector_x, **where)

    def on_train_begin(self, trainer):
        self.frames = []
        self._snapshot(trainer)

    def on_epoch_end(self, trainer):
        self._snapshot(trainer)

    def on_train_end(self, trainer):
        # Only now, after the final clustering and the raw-pixel baseline (an earlier
        # callback): scikit-learn sets the BLAS thread count of the whole process while it
        # computes (t-SNE's neighbours), which changes a GEMM's rounding beside it.
        path = lambda name: os.path.join(self.run_dir, name)  # noqa: E731
        name = os.path.basename(os.path.normpath(self.run_dir))
        pictures = {}
        with ThreadPoolExecutor(1) as pool:
            tsne, what = None, ""
            if self.projector_x is not None:
                emb = self._embed(trainer)
                epoch = trainer.history[-1]["epoch"]
                what = f"{name}: embedding of {len(emb)} test samples, epoch {epoch}"
                points = pca_2d(emb)  # before t-SNE starts: no BLAS call beside it
                if self.tsne and len(emb) >= 4:
                    # One core, mostly outside the GIL: beside the drawing on another.
                    tsne = pool.submit(tsne_2d, emb, seed=self.seed)
                pictures["pca"] = plot_scatter(
                    path("pca.png"), points, self.projector_y, self.class_names, f"PCA, {what}"
                )
                if self.frames:
                    pictures["grid"] = self._plot_grid(path("pca-epochs.png"), name)
            pictures["curves"] = plot_curves(
                path("curves.png"), trainer.history, self.baseline, title=name
            )
            if tsne is not None:
                pictures["tsne"] = plot_scatter(
                    path("tsne.png"),
                    tsne.result(),
                    self.projector_y,
                    self.class_names,
                    f"t-SNE, {what}",
                )
        self.written = [pictures[k] for k in ("curves", "pca", "tsne", "grid") if k in pictures]
        logger.info("pictures: %s", ", ".join(os.path.basename(p) for p in self.written))

    def _plot_grid(self, path, name):
        keep = set(pick_epochs([e for e, _ in self.frames], self.max_panels))
        frames = [f for f in self.frames if f[0] in keep]
        return plot_pca_grid(
            path,
            frames,
            self.projector_y,
            self.class_names,
            title=f"{name}: PCA of the embedding per epoch",
            total=len(self.frames),
        )
