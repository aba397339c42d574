"""Static PNG pictures of a run, for users without TensorBoard.

:class:`PlotCallback` writes into the run directory at the end of training:

``curves.png``
    Training loss, active-triplet fraction, test P@1 (with strict triplet accuracy) and
    validation P@1 per epoch; the raw-pixel baseline as a dashed line when given.
``pca.png``, ``tsne.png``
    The final embedding of the projector sample in 2-D by scikit-learn's ``PCA`` and
    ``TSNE``, coloured by label, with a legend.
``pca-epochs.png``
    A grid of PCA scatters of the same sample, one panel per epoch titled ``epoch N``, from
    the untrained net (epoch 0) to the last epoch, to watch the clusters form. Every epoch
    has a panel up to ``max_panels`` (20); longer runs show evenly spaced epochs, always the
    first and the last, and the title says how many of how many.

The legend sits in a column right of the plots and titles are the figure's, centred and
wrapped, so neither covers points nor runs off the picture.

Drawing uses matplotlib's object API with the Agg canvas, never ``pyplot``: no global
backend or figure state is touched. The pictures of the final embedding are drawn in a
background thread from the end of the last epoch, while the final evaluation's clustering
and the raw-pixel baseline run, and t-SNE beside them in another (it computes mostly
outside the GIL, on one core); ``curves.png`` follows, with the baseline. matplotlib and
scikit-learn are imported lazily, so the package imports without them.
"""

from __future__ import annotations

import logging
import math
import os
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..io import atomic_save
from ..training.callbacks import Callback
from .projections import _as_points, pca_2d, tsne_2d

__all__ = [
    "PLOT_FILES",
    "PlotCallback",
    "pca_2d",
    "plot_curves",
    "grid_shape",
    "pick_epochs",
    "plot_pca_grid",
    "plot_scatter",
    "tsne_2d",
]

logger = logging.getLogger("gluon_triplet")

#: File names :class:`PlotCallback` writes (the last three need a projector sample).
PLOT_FILES = ("curves.png", "pca.png", "tsne.png", "pca-epochs.png")

# Legends with more entries than this would cover the scatter.
_MAX_LEGEND = 20
_DPI = 100
# Inches: space between the plots and the legend column, one panel of the per-epoch grid,
# the band for the figure's title, and the side of the single scatter.
_LEGEND_PAD = 0.2
_PANEL = 2.5
_TITLE_HEIGHT = 0.5
_SCATTER = 6.5
# Characters per title line: longer titles wrap instead of running off the figure.
_TITLE_CHARS = 80


def _colours(n):
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _classes(labels, class_names):
    """Sorted label values, their display names and an ``(N,)`` class index per point."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {y.shape}")
    values, codes = np.unique(y, return_inverse=True)
    if class_names is not None and y.dtype.kind in "iu":
        names = [str(class_names[v]) if 0 <= v < len(class_names) else str(v) for v in values]
    else:
        names = [str(v) for v in values]
    return names, codes


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    # A reader never sees half a PNG.
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))
    return path


def _scatter(ax, points, codes, colours, names, size):
    for k, name in enumerate(names):
        sel = codes == k
        ax.scatter(
            points[sel, 0], points[sel, 1], s=size, color=colours[k], label=name, linewidths=0
        )
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, ax, plots_width):
    """One legend for the figure, in a column right of the plots, outside every axes so it
    never covers points or pushes a title off the picture. The figure widens by the
    legend's measured width, so the plots keep ``plots_width`` inches whatever the names."""
    handles, texts = ax.get_legend_handles_labels()
    legend = fig.legend(
        handles, texts, loc="center right", markerscale=2.5, frameon=False, fontsize=9
    )
    width = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    fig.set_size_inches(
        plots_width + math.ceil((width + _LEGEND_PAD) * 10) / 10, fig.get_figheight()
    )


def _layout(fig, plots_width):
    # tight_layout inside the plots' rectangle, leaving the legend column free; the title is
    # the figure's (suptitle), centred on the whole width, which tight_layout keeps inside.
    fig.tight_layout(rect=(0, 0, plots_width / fig.get_figwidth(), 1))


def _wrap(title):
    return "\n".join(textwrap.wrap(title, _TITLE_CHARS)) if title else title


def plot_scatter(path, points, labels, class_names=None, title=""):
    """One 2-D scatter coloured by label, with a legend; written as a PNG.

    Parameters
    ----------
    path : str
    points : (N, 2) array
    labels : (N,) labels
    class_names : sequence of str, optional
        Name of each integer label value.
    title : str

    Returns
    -------
    str
        ``path``.
    """
    points = _as_points(points, "points")
    if points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {points.shape}")
    names, codes = _classes(labels, class_names)
    if len(codes) != len(points):
        raise ValueError(f"{len(codes)} labels for {len(points)} points")
    fig = _figure(_SCATTER, _SCATTER + _TITLE_HEIGHT)
    ax = fig.add_subplot(1, 1, 1)
    _scatter(ax, points, codes, _colours(len(names)), names, size=10 if len(points) > 300 else 25)
    if len(names) <= _MAX_LEGEND:
        _legend(fig, ax, _SCATTER)
    if title:
        fig.suptitle(_wrap(title), fontsize=11)
    _layout(fig, _SCATTER)
    return _save(fig, path)


def _series(history, split, key):
    pts = [
        (r["epoch"], r[split][key])
        for r in history
        if isinstance((r.get(split) or {}).get(key), (int, float))
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(path, history, baseline=None, title=""):
    """Loss, active fraction, test P@1 / triplet accuracy and validation P@1 per epoch
    (each where the records have it: by default the test split only at the last epoch);
    written as a PNG.

    Parameters
    ----------
    path : str
    history : list of dict
        Epoch records as in ``TripletTrainer.history``: ``{"epoch", "train": {"loss",
        "active_fraction"}, "test": {"precision_at_1", "triplet_accuracy"}, "val":
        {"precision_at_1"}}``.
    baseline : dict, optional
        Test metrics of a baseline (the raw pixels), drawn as dashed lines.
    title : str

    Returns
    -------
    str
        ``path``.
    """
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("plot_curves: history is empty")
    fig = _figure(12, 3.6)
    axes = fig.subplots(1, 3)
    panels = [
        ("train loss", [("train", "loss", "loss")]),
        ("active triplets (train)", [("train", "active_fraction", "active fraction")]),
        (
            "retrieval",
            [
                ("test", "precision_at_1", "test P@1"),
                ("test", "triplet_accuracy", "test triplet acc"),
                ("val", "precision_at_1", "validation P@1"),
            ],
        ),
    ]
    for ax, (panel_title, lines) in zip(axes, panels):
        for i, (split, key, label) in enumerate(lines):
            x, y = _series(history, split, key)
            colour = f"C{i}"
            if x:
                ax.plot(x, y, marker="o", markersize=3, color=colour, label=label)
            if baseline and split == "test" and key in baseline:
                ax.axhline(
                    baseline[key], color=colour, linestyle="--", linewidth=1, label=f"raw {label}"
                )
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(ax.get_legend_handles_labels()[0]) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def pick_epochs(epochs, max_panels=20):
    """At most ``max_panels`` of ``epochs``, evenly spaced, always the first and last.

    Parameters
    ----------
    epochs : sequence of int
    max_panels : int, >= 1

    Returns
    -------
    list of int
        All of ``epochs`` when they fit, else an evenly spaced subset in order.
    """
    epochs = list(epochs)
    if max_panels < 1:
        raise ValueError(f"max_panels must be >= 1, got {max_panels}")
    if len(epochs) <= max_panels:
        return epochs
    if max_panels == 1:
        return epochs[-1:]
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, max_panels)).astype(int))
    return [epochs[i] for i in picks]


def grid_shape(n):
    """``(rows, columns)`` for ``n`` square panels: one row up to 4, else near-square and
    wider than tall (5 -> 2 x 3, 12 -> 3 x 4, 20 -> 4 x 5)."""
    if n < 1:
        raise ValueError(f"grid_shape: need at least one panel, got {n}")
    cols = n if n <= 4 else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def plot_pca_grid(path, frames, labels, class_names=None, title="", total=None):
    """A grid of 2-D scatters, one per epoch, each titled ``epoch N``; written as a PNG.

    Parameters
    ----------
    path : str
    frames : list of (int, (N, 2) array)
        ``(epoch, points)``, in order.
    labels : (N,) labels, shared by every frame
    class_names : sequence of str, optional
    title : str
    total : int, optional
        How many epochs there were; when more than ``len(frames)``, the title says that only
        the panels' epochs are shown.

    Returns
    -------
    str
        ``path``.
    """
    if not frames:
        raise ValueError("plot_pca_grid: no frames")
    names, codes = _classes(labels, class_names)
    colours = _colours(len(names))
    rows, cols = grid_shape(len(frames))
    fig = _figure(_PANEL * cols, _PANEL * rows + _TITLE_HEIGHT)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (epoch, points) in zip(axes, frames):
        points = _as_points(points, "points")
        if len(points) != len(codes):
            raise ValueError(f"{len(codes)} labels for a frame of {len(points)} points")
        _scatter(ax, points, codes, colours, names, size=4)
        ax.set_title(f"epoch {epoch}" + (" (untrained)" if epoch == 0 else ""), fontsize=10)
    for ax in axes[len(frames) :]:
        ax.set_axis_off()
    if total is not None and total > len(frames):
        shown = f"{len(frames)} of {total} epochs shown"
        title = f"{title} ({shown})" if title else shown
    if len(names) <= _MAX_LEGEND:
        _legend(fig, axes[0], _PANEL * cols)
    if title:
        fig.suptitle(_wrap(title), fontsize=11)
    _layout(fig, _PANEL * cols)
    return _save(fig, path)


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
        self._pool = None
        self._pending = None

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
        last = getattr(trainer, "total_epochs", None)
        if getattr(trainer, "stop_training", False) or (last is not None and trainer.epoch >= last):
            # The last epoch: its pictures need nothing more, so they are drawn in the
            # background while the trainer and the other callbacks finish.
            self._start(trainer)

    def _start(self, trainer):
        """Start drawing the final embedding's pictures (all but ``curves.png``, which
        waits for the raw-pixel baseline) in a background thread."""
        self.close()
        if self.projector_x is None:
            return
        epoch = trainer.history[-1]["epoch"]
        emb = self._embed(trainer)  # the net runs here, in the caller's thread
        self._pool = ThreadPoolExecutor(2)
        self._pending = (epoch, self._pool.submit(self._projections, emb, epoch))

    def _projections(self, emb, epoch):
        """``pca.png``, ``tsne.png`` and ``pca-epochs.png``; t-SNE (one core, mostly outside
        the GIL) runs in a second thread while the others are drawn."""
        path = lambda name: os.path.join(self.run_dir, name)  # noqa: E731
        name = os.path.basename(os.path.normpath(self.run_dir))
        what = f"{name}: embedding of {len(emb)} test samples, epoch {epoch}"
        tsne = None
        if self.tsne and len(emb) >= 4:
            tsne = self._pool.submit(tsne_2d, emb, seed=self.seed)
        pictures = {
            "pca": plot_scatter(
                path("pca.png"), pca_2d(emb), self.projector_y, self.class_names, f"PCA, {what}"
            )
        }
        if self.frames:
            pictures["grid"] = self._plot_grid(path("pca-epochs.png"), name)
        if tsne is not None:
            pictures["tsne"] = plot_scatter(
                path("tsne.png"),
                tsne.result(),
                self.projector_y,
                self.class_names,
                f"t-SNE, {what}",
            )
        return pictures

    def close(self):
        """Stop the background drawing's threads (after a failed or interrupted run)."""
        pool, self._pool, self._pending = getattr(self, "_pool", None), None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def on_train_end(self, trainer):
        pending = getattr(self, "_pending", None)
        if self.projector_x is not None and (
            pending is None or pending[0] != trainer.history[-1]["epoch"]
        ):
            self._start(trainer)  # e.g. a resumed run with no epoch left
            pending = self._pending
        pictures = {}
        try:
            if pending is not None:
                pictures.update(pending[1].result())
        finally:
            self.close()
        # After the others: matplotlib draws in one thread at a time.
        name = os.path.basename(os.path.normpath(self.run_dir))
        pictures["curves"] = plot_curves(
            os.path.join(self.run_dir, "curves.png"), trainer.history, self.baseline, title=name
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
