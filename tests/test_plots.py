"""PNG pictures: the 2-D projections against plain linear algebra, and real PNG files."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gluon_triplet.plots import (
    PLOT_FILES,
    PlotCallback,
    pca_2d,
    plot_curves,
    plot_pca_strip,
    plot_scatter,
    strip_epochs,
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


@given(st.integers(1, 60), st.integers(1, 12))
def test_strip_epochs(n, max_panels):
    epochs = list(range(n))
    got = strip_epochs(epochs, max_panels)
    assert got == sorted(set(got)) and set(got) <= set(epochs)
    assert len(got) == min(n, max_panels)
    assert got[-1] == n - 1
    if max_panels > 1:
        assert got[0] == 0


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
    assert png_size(plot_scatter(str(tmp_path / "s.png"), pts, y, ("a", "b", "c"))) == (750, 600)
    baseline = {"precision_at_1": 0.5}
    assert png_size(plot_curves(str(tmp_path / "c.png"), _history(4), baseline)) == (1200, 360)
    frames = [(e, rng.standard_normal((30, 2))) for e in range(3)]
    assert png_size(plot_pca_strip(str(tmp_path / "p.png"), frames, y)) == (750, 260)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "p.png", "s.png"]


def test_plot_validation(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_scatter(str(tmp_path / "s.png"), np.zeros((4, 3)), np.arange(4))
    with pytest.raises(ValueError, match="3 labels for 4 points"):
        plot_scatter(str(tmp_path / "s.png"), np.zeros((4, 2)), np.arange(3))
    with pytest.raises(ValueError, match="empty"):
        plot_curves(str(tmp_path / "c.png"), [])
    with pytest.raises(ValueError, match="no frames"):
        plot_pca_strip(str(tmp_path / "p.png"), [], np.arange(3))
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
    cb = PlotCallback(str(tmp_path), x, y, class_names=list("wxyz"), max_panels=5)
    trainer = _drive(cb, epochs=12)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOT_FILES)
    assert [e for e, _ in cb.frames] == list(range(13))
    # frame of the last epoch: the final embedding's PCA, signs aligned to the frame before
    final = pca_2d(trainer.embed(x))
    for k in range(2):
        np.testing.assert_allclose(np.abs(cb.frames[-1][1][:, k]), np.abs(final[:, k]))
    widths = {name: png_size(tmp_path / name)[0] for name in PLOT_FILES}
    assert widths["pca-epochs.png"] == round(100 * (2.2 * 5 + 0.9))


def test_plot_callback_without_sample_writes_curves_only(tmp_path):
    _drive(PlotCallback(str(tmp_path)), epochs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
