"""Static PNG pictures of a run, for users without TensorBoard.

:class:`~gluon_triplet.runs.pictures.PlotCallback` writes into the run directory at the
end of training:

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
backend or figure state is touched; figures are drawn in one thread at a time. matplotlib
and scikit-learn are imported lazily, so the package imports without them.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from ..io import atomic_save
from .projections import _as_points, pca_2d, tsne_2d

__all__ = [
    "PLOT_FILES",
    "pca_2d",
    "plot_curves",
    "grid_shape",
    "pick_epochs",
    "plot_pca_grid",
    "plot_scatter",
    "tsne_2d",
]

#: File names :class:`~gluon_triplet.runs.pictures.PlotCallback` writes (the last three
#: need a projector sample).
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
