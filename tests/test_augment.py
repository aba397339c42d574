import mxnet as mx
import numpy as np
import pytest

from gluon_triplet.data.augment import Augmenter, make_augmenter


@pytest.fixture(scope="module")
def digits():
    from gluon_triplet.data.mnist import _mnist_5k_arrays

    x, y = _mnist_5k_arrays()
    return np.asarray(x[:32]), np.asarray(y[:32])


def colour(x):
    return np.ascontiguousarray(
        np.repeat(x[:, None], 3, axis=1) * np.array([1.0, 0.6, 0.2], np.float32)[:, None, None]
    )


@pytest.mark.parametrize("kind", ["digits", "objects", "photos"])
@pytest.mark.parametrize("rgb", [False, True])
def test_shape_range_and_seeded(digits, kind, rgb):
    x = colour(digits[0]) if rgb else digits[0]
    aug = make_augmenter(kind, x.shape[1:])
    aug.hybridize()
    mx.random.seed(3)
    a = aug(mx.nd.array(x)).asnumpy()
    mx.random.seed(3)
    b = aug(mx.nd.array(x)).asnumpy()
    c = aug(mx.nd.array(x)).asnumpy()
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)  # same seed, same batch
    assert not np.array_equal(a, c)  # a new draw differs
    assert a.min() >= 0 and a.max() <= 1 + 1e-6
    assert np.abs(a - x).mean() > 0.01  # it changed the pictures


def corr(a, b):
    """Correlation of two pictures at 4x4-block resolution (blind to small shifts)."""

    def blocks(p):
        h, w = p.shape[0] // 4 * 4, p.shape[1] // 4 * 4
        return p[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3)).ravel()

    return np.corrcoef(blocks(a), blocks(b))[0, 1]


def test_digits_never_flip(digits):
    # On digits unlike their mirror image, augmented copies resemble the digit more than its
    # mirror (measured: all but ~3%, which rotation and shift blur; a flip would make it
    # about half, as photos do below).
    from gluon_triplet.data.mnist import _mnist_5k_arrays

    x = np.stack([d for d in _mnist_5k_arrays()[0][:400] if corr(d, d[:, ::-1]) < 0.5])
    assert len(x) >= 16
    aug = make_augmenter("digits", x.shape[1:])
    mx.random.seed(0)
    closer_to_mirror = []
    for _ in range(10):
        out = aug(mx.nd.array(x)).asnumpy()
        closer_to_mirror += [corr(o, d) <= corr(o, d[:, ::-1]) for o, d in zip(out, x)]
    assert np.mean(closer_to_mirror) < 0.1


def test_photos_flip_some(digits):
    # Up to the crop, about half the photos are mirrored: correlation with the mirror wins.
    x = colour(digits[0])
    aug = make_augmenter("photos", x.shape[1:])
    mx.random.seed(1)
    out = aug(mx.nd.array(x)).asnumpy().mean(axis=1)
    grey = x.mean(axis=1)
    same = [corr(o, g) for o, g in zip(out, grey)]
    mirror = [corr(o, g[:, ::-1]) for o, g in zip(out, grey)]
    mirrored = np.mean(np.array(mirror) > np.array(same))
    assert 0.15 < mirrored < 0.85


def shifted(p, dy, dx):
    """``p`` moved by whole pixels, zeros coming in."""
    out = np.zeros_like(p)
    h, w = p.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = p[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_objects_flip_about_half_and_only_shift(digits):
    # Flip and shift only: no rotation, scaling or colour change. Brute force: every output
    # matches the picture or its mirror moved by at most 3 whole pixels (10% of 28 = 2.8,
    # bilinear in between), and about half match the mirror best.
    x = colour(digits[0])
    aug = make_augmenter("objects", x.shape[1:])
    mx.random.seed(2)
    out = aug(mx.nd.array(x)).asnumpy()
    grey, out_grey = x.mean(axis=1), out.mean(axis=1)
    moves = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]

    def best(o, g):
        return max(np.corrcoef(o.ravel(), shifted(g, *m).ravel())[0, 1] for m in moves)

    same = np.array([best(o, g) for o, g in zip(out_grey, grey)])
    mirror = np.array([best(o, g[:, ::-1]) for o, g in zip(out_grey, grey)])
    assert np.all(np.maximum(same, mirror) > 0.85)
    assert 0.15 < np.mean(mirror > same) < 0.85
    # Colours untouched: each channel is resampled alike, so the tint's ratios survive.
    lit = out[:, 0] > 0.2
    np.testing.assert_allclose(out[:, 1][lit] / out[:, 0][lit], 0.6, rtol=1e-4)
    # Bilinear weights are a convex combination: no pixel brighter than the input's.
    assert out.max() <= x.max() + 1e-6


def test_refuses_non_images():
    assert make_augmenter("none", (784,)) is None
    with pytest.raises(ValueError, match="needs image samples"):
        make_augmenter("digits", (784,))
    with pytest.raises(ValueError, match="augment must be one of none, digits, objects, photos"):
        make_augmenter("flip", (28, 28))
    with pytest.raises(ValueError, match="augment must be one of"):
        Augmenter("none", (28, 28))


def test_augment_in_a_run_is_recorded_seeded_and_off_at_evaluation(tmp_path, capsys):
    import json

    from gluon_triplet import embed, evaluate, load_dataset, load_run
    from gluon_triplet.cli import main
    from gluon_triplet.data.mnist import _mnist_5k_arrays

    x, y = _mnist_5k_arrays()
    pick = np.concatenate([np.flatnonzero(y == c)[:15] for c in range(4)])
    np.savez(tmp_path / "d.npz", x=(np.asarray(x)[pick] * 255).astype(np.uint8), y=y[pick])
    flags = ["--dataset", f"npz:{tmp_path / 'd.npz'}", "--epochs", "2", "-P", "4", "-K", "4"]
    flags += ["--embedding-size", "8", "--no-plots", "--projector-samples", "0"]
    flags += ["--augment", "digits", "--logdir", str(tmp_path / "logs")]
    runs = []
    for name in ("a", "b"):
        assert main([*flags, "--run-name", name]) == 0
        runs.append(tmp_path / "logs" / name)
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["augment"] == "digits"
    assert "augment: digits" in (runs[0] / "train.log").read_text()
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    untimed = [[{k: v for k, v in r.items() if k != "time"} for r in m["history"]] for m in metrics]
    assert untimed[0] == untimed[1]  # same seed, same augmentation
    plain = [f if f != "digits" else "none" for f in flags]
    assert main([*plain, "--run-name", "plain"]) == 0
    without = json.loads((tmp_path / "logs" / "plain" / "metrics.json").read_text())
    assert without["history"][1]["train"]["loss"] != metrics[0]["history"][1]["train"]["loss"]
    # Evaluating the saved net (no augmentation) reproduces the run's own test metrics.
    net, cfg = load_run(str(runs[0]), params="last")
    data = load_dataset(cfg.dataset)
    again = evaluate(embed(net, data.x_test), data.y_test, margin=cfg.margin, seed=cfg.seed)
    last = metrics[0]["history"][-1]["test"]
    assert again["precision_at_1"] == pytest.approx(last["precision_at_1"], rel=1e-6)
    assert again["triplet_accuracy"] == pytest.approx(last["triplet_accuracy"], rel=1e-6)
