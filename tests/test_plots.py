"""PNG pictures: the 2-D projections against plain linear algebra, and real PNG files."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gluon_triplet.runs.pictures import PlotCallback
from gluon_triplet.runs.plots import (
    PLOT_FILES,
    grid_shape,
    pca_2d,
    pick_epochs,
    plot_curves,
    plot_pca_grid,
    plot_scatter,
    tsne_2d,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, path
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_pca_2d_matches_svd():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1]) + 7
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    got = pca_2d(x)
    assert got.shape == (50, 2)
    for k in range(2):  # a principal axis is only defined up to its sign
        sign = np.sign(got[:, k] @ expected[:, k])
        np.testing.assert_allclose(sign * got[:, k], expected[:, k], atol=1e-9)


def test_pca_2d_one_dimension_and_validation():
    x = np.arange(5, dtype=float)[:, None]
    got = pca_2d(x)
    assert got.shape == (5, 2)
    np.testing.assert_allclose(np.abs(got[:, 0]), np.abs(x[:, 0] - 2))
    assert (got[:, 1] == 0).all()
    with pytest.raises(ValueError, match="N >= 2"):
        pca_2d(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        pca_2d(np.array([[0.0, 1.0], [np.nan, 2.0]]))


def test_tsne_2d_separates_clusters_and_is_seeded():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    x = rng.standard_normal((60, 80)) + 20 * np.eye(80)[y]
    a, b = tsne_2d(x, seed=3), tsne_2d(x, seed=3)
    assert a.shape == (60, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # every point's nearest neighbour in the picture is from its own cluster
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(axis=1)] == y).all()
    assert tsne_2d(x[:5]).shape == (5, 2)  # perplexity capped for tiny samples
    with pytest.raises(ValueError, match="at least 4"):
        tsne_2d(x[:3])


@given(st.integers(1, 60), st.integers(1, 25))
def test_pick_epochs(n, max_panels):
    epochs = list(range(n))
    got = pick_epochs(epochs, max_panels)
    assert got == sorted(set(got)) and set(got) <= set(epochs)
    assert len(got) == min(n, max_panels)
    assert got[-1] == n - 1
    if max_panels > 1:
        assert got[0] == 0


def test_pick_epochs_keeps_every_epoch_of_an_11_epoch_run():
    # 11 trained epochs + the untrained net = 12 frames: none may be dropped silently
    assert pick_epochs(range(12)) == list(range(12))
    assert pick_epochs(range(20)) == list(range(20))
    got = pick_epochs(range(41))
    assert len(got) == 20 and got[0] == 0 and got[-1] == 40


@given(st.integers(1, 400))
def test_grid_shape(n):
    rows, cols = grid_shape(n)
    assert rows * cols >= n > (rows - 1) * cols  # every panel fits, no empty row
    assert rows <= cols  # never taller than wide: a grid, not a strip
    if n > 4:
        assert cols <= rows + 1  # near-square past one short row
    else:
        assert rows == 1


def _history(epochs):
    out = [{"epoch": 0, "train": {}, "test": {"precision_at_1": 0.3, "triplet_accuracy": 0.6}}]
    for k in range(1, epochs + 1):
        out.append(
            {
                "epoch": k,
                "train": {"loss": 1.0 / k, "active_fraction": 0.5 / k},
                "test": {"precision_at_1": 0.3 + 0.05 * k, "triplet_accuracy": 0.6 + 0.03 * k},
            }
        )
    return out


def test_plot_files_are_pngs_of_the_figure_size(tmp_path):
    rng = np.random.default_rng(2)
    pts = rng.standard_normal((30, 2))
    y = np.arange(30) % 3
    # 650 px of plot plus a legend column as wide as the longest name needs
    short = png_size(plot_scatter(str(tmp_path / "s.png"), pts, y, ("a", "b", "c")))
    long_names = ("T-shirt/top", "Trouser", "Ankle boot")
    long = png_size(plot_scatter(str(tmp_path / "l.png"), pts, y, long_names))
    assert short[1] == long[1] == 700
    assert 650 < short[0] < long[0] < 650 + 250
    baseline = {"precision_at_1": 0.5}
    assert png_size(plot_curves(str(tmp_path / "c.png"), _history(4), baseline)) == (1200, 360)
    # 3 panels of 250 px in a row, 12 in a 3 x 4 grid; plus the title band and the legend
    frames = [(e, rng.standard_normal((30, 2))) for e in range(12)]
    width, height = png_size(plot_pca_grid(str(tmp_path / "p.png"), frames[:3], y))
    assert height == 300 and 750 < width < 750 + 150
    width, height = png_size(plot_pca_grid(str(tmp_path / "g.png"), frames, y))
    assert height == 800 and 1000 < width < 1000 + 150
    names = ["c.png", "g.png", "l.png", "p.png", "s.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def _text_inside(fig):
    """Every title and legend of a figure lies inside the picture: nothing clipped."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [fig._suptitle] + [ax.title for ax in fig.axes] + list(fig.legends)
    for artist in texts:
        if artist is None or not artist.get_visible():
            continue
        extent = artist.get_window_extent(renderer)
        if extent.width == 0:
            continue
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, artist
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, artist
    return texts


def test_titles_and_legend_stay_inside_the_picture(tmp_path, monkeypatch):
    """The Fashion-MNIST pictures had their title cut on the left by the legend's room."""
    import gluon_triplet.runs.plots as plots

    figures = []
    real_save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path)
    )
    rng = np.random.default_rng(3)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    y = np.arange(200) % 10
    title = "t-SNE, 20261201-153012-fashion-mnist: embedding of 1000 test samples, epoch 11"
    plot_scatter(str(tmp_path / "s.png"), rng.standard_normal((200, 2)), y, names, title)
    frames = [(e, rng.standard_normal((200, 2))) for e in range(12)]
    plot_pca_grid(str(tmp_path / "g.png"), frames, y, names, "20261201-153012-fashion-mnist")
    for fig in figures:
        _text_inside(fig)
        # the legend sits right of every plot, never over one
        legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
        assert all(ax.get_window_extent().x1 <= legend.x0 for ax in fig.axes)
    grid = figures[1]
    titles = [ax.get_title() for ax in grid.axes]
    assert titles == ["epoch 0 (untrained)"] + [f"epoch {e}" for e in range(1, 12)]
    plot_pca_grid(str(tmp_path / "h.png"), frames[:5], y, names, "r", total=40)
    assert figures[-1]._suptitle.get_text() == "r (5 of 40 epochs shown)"
    assert [ax.get_visible() and ax.axison for ax in figures[-1].axes] == [True] * 5 + [False]


def test_plot_validation(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_scatter(str(tmp_path / "s.png"), np.zeros((4, 3)), np.arange(4))
    with pytest.raises(ValueError, match="3 labels for 4 points"):
        plot_scatter(str(tmp_path / "s.png"), np.zeros((4, 2)), np.arange(3))
    with pytest.raises(ValueError, match="empty"):
        plot_curves(str(tmp_path / "c.png"), [])
    with pytest.raises(ValueError, match="no frames"):
        plot_pca_grid(str(tmp_path / "p.png"), [], np.arange(3))
    with pytest.raises(ValueError, match="both"):
        PlotCallback(str(tmp_path), projector_x=np.zeros((4, 2)))
    assert list(tmp_path.iterdir()) == []


def _drive(callback, epochs, dim_in=12):
    """The hooks in TripletTrainer.fit's order, with a fixed linear 'net'."""
    w = np.random.default_rng(4).standard_normal((dim_in, 5))
    trainer = SimpleNamespace(history=[], embed=lambda x: np.reshape(x, (len(x), -1)) @ w)
    records = _history(epochs)
    trainer.history.append(records[0])
    callback.on_train_begin(trainer)
    for record in records[1:]:
        callback.on_epoch_begin(trainer)
        trainer.history.append(record)
        callback.on_epoch_end(trainer)
    callback.on_train_end(trainer)
    return trainer


def test_plot_callback_writes_every_picture(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.random((40, 3, 4))
    y = np.arange(40) % 4
    cb = PlotCallback(str(tmp_path), x, y, class_names=list("wxyz"))
    trainer = _drive(cb, epochs=11)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOT_FILES)
    assert [e for e, _ in cb.frames] == list(range(12))
    # frame of the last epoch: the final embedding's PCA, signs aligned to the frame before
    final = pca_2d(trainer.embed(x))
    for k in range(2):
        np.testing.assert_allclose(np.abs(cb.frames[-1][1][:, k]), np.abs(final[:, k]))
    # all 12 frames in a 3 x 4 grid of 250 px panels
    width, height = png_size(tmp_path / "pca-epochs.png")
    assert height == 3 * 250 + 50 and 4 * 250 < width < 4 * 250 + 150


def test_plot_callback_picks_evenly_spaced_epochs_and_says_so(tmp_path, monkeypatch):
    import gluon_triplet.runs.pictures as pictures

    calls = []
    monkeypatch.setattr(pictures, "plot_pca_grid", lambda *a, **k: calls.append((a, k)) or a[0])
    x = np.random.default_rng(6).random((20, 12))
    cb = PlotCallback(str(tmp_path), x, np.arange(20) % 2, tsne=False, max_panels=5)
    _drive(cb, epochs=12)
    ((args, kwargs),) = calls
    assert [e for e, _ in args[1]] == [0, 3, 6, 9, 12]
    assert kwargs["total"] == 13


def test_plot_callback_without_sample_writes_curves_only(tmp_path):
    _drive(PlotCallback(str(tmp_path)), epochs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
