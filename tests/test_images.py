"""Class folders, RecordIO, single pictures and 4-D layouts, with real MNIST digits."""

import json
import logging
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gluon_triplet.data import decoding
from gluon_triplet.data.bundle import stratified_split
from gluon_triplet.data.datasets import DataError, load_dataset
from gluon_triplet.data.decoding import ImageOptions, parse_image_size
from gluon_triplet.data.imaging import MIN_AUTO_SIZE, fit_epoch_pixels
from gluon_triplet.data.layout import to_canonical_layout
from gluon_triplet.data.recordio import pack_folder
from gluon_triplet.errors import ImageFileError

PER_CLASS = 8
CLASSES = ("three", "one", "zero", "two")  # folder names; sorted they are one, three, two, zero


@pytest.fixture(scope="module")
def digits():
    from gluon_triplet.data.mnist import _mnist_5k_arrays

    x, y = _mnist_5k_arrays()
    return (np.asarray(x) * 255).round().astype(np.uint8), np.asarray(y)


def tint(grey, rgb):
    return np.stack([grey * (c / 255) for c in rgb], -1).round().astype(np.uint8)


def write_digits(root, digits, classes=CLASSES, per_class=PER_CLASS, colour=True, corrupt=True):
    """``root/<name>/`` with real digits of the class the name spells, as PNG and JPEG;
    every third tinted RGB (if ``colour``), every fourth resized, two corrupt files."""
    x, y = digits
    value = {"zero": 0, "one": 1, "two": 2, "three": 3}
    for name in classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for j, i in enumerate(np.flatnonzero(y == value[name])[:per_class]):
            img = Image.fromarray(x[i], "L")
            if colour and j % 3 == 1:
                img = Image.fromarray(tint(x[i], (255, 120, 40)), "RGB")
            if j % 4 == 2:
                img = img.resize((36, 42), Image.BILINEAR)
            img.save(os.path.join(root, name, f"{j:02d}.{'png' if j % 2 else 'jpg'}"))
    if corrupt:
        with open(os.path.join(root, classes[0], "broken.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and nothing else
        with open(os.path.join(root, classes[1], "zz-truncated.jpg"), "wb") as f:
            with open(os.path.join(root, classes[1], "00.jpg"), "rb") as src:
                f.write(src.read()[:200])
    return str(root)


@pytest.fixture
def folder(tmp_path, digits):
    return write_digits(tmp_path / "digits", digits)


def test_folder_class_names_labels_and_bad_files(folder, caplog):
    os.makedirs(os.path.join(folder, "empty-class"))
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        b = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0))
    assert b.class_names == ("one", "three", "two", "zero")
    assert b.x_train.dtype == np.float32 and b.x_train.shape[1:] == (3, 28, 28)
    assert len(b.y_train) + len(b.y_test) == 4 * PER_CLASS  # both corrupt files skipped
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    bad = [w for w in warnings if "corrupt" in w]
    assert len(bad) == 1 and bad[0].startswith("2 unreadable or corrupt image(s)")
    assert "broken.png" in bad[0] and "zz-truncated.jpg" in bad[0]
    assert any("empty class folder" in w and "empty-class" in w for w in warnings)
    assert "image size 28x28" in caplog.text


def test_folder_pixels_match_the_files(tmp_path, digits):
    root = write_digits(tmp_path / "d", digits, colour=False, corrupt=False)
    b = load_dataset(f"folder:{root}", images=ImageOptions(workers=0))
    assert b.x_train.shape[1:] == (28, 28)  # every picture grey: one channel, (N, H, W)
    # A PNG that was not resized is read back exactly: find it among the loaded samples.
    x, y = digits
    original = x[np.flatnonzero(y == 1)[1]] / 255  # one/01.png
    everything = np.concatenate([b.x_train, b.x_test])
    assert np.abs(everything - original).max(axis=(1, 2)).min() < 1e-6


def test_folder_stratified_split_is_the_npz_rule(folder):
    b = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0))
    labels = np.sort(np.concatenate([b.y_train, b.y_test]))
    train, test = stratified_split(labels)
    assert np.array_equal(np.bincount(b.y_test), np.bincount(labels[test]))
    again = load_dataset(f"folder:{folder}", images=ImageOptions(workers=2))
    np.testing.assert_array_equal(again.x_test, b.x_test)  # workers do not change the data


def test_folder_train_test_layout(tmp_path, digits):
    root = tmp_path / "split"
    write_digits(root / "train", digits, corrupt=False)
    write_digits(root / "test", digits, classes=("zero", "one", "two"), per_class=3, corrupt=False)
    b = load_dataset(f"folder:{root}", images=ImageOptions(workers=0))
    assert len(b.y_train) == 4 * PER_CLASS and len(b.y_test) == 9
    assert b.class_names == ("one", "three", "two", "zero")
    assert set(b.y_test.tolist()) == {0, 2, 3}


def test_strict_refuses_corrupt_files(folder):
    with pytest.raises(DataError, match=r"2 unreadable or corrupt image\(s\).*--strict"):
        load_dataset(f"folder:{folder}", images=ImageOptions(strict=True, workers=0))


def test_fewer_than_two_classes(tmp_path, digits):
    root = write_digits(tmp_path / "one", digits, classes=("one",), corrupt=False)
    with pytest.raises(DataError, match="1 class.*at least two usable images"):
        load_dataset(f"folder:{root}")
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(f"folder:{tmp_path / 'one' / 'one'}")
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_image_size_crop_and_upscale(folder):
    b = load_dataset(f"folder:{folder}", images=ImageOptions(size=(20, 24), channels=1, workers=0))
    assert b.x_train.shape[1:] == (20, 24)
    with pytest.raises(DataError, match=r"smaller than the 40x40 crop.*upscaling"):
        load_dataset(f"folder:{folder}", images=ImageOptions(size=(40, 40), upscale=False))


def test_fit_picture_covers_then_centre_crops():
    arr = np.arange(40 * 60, dtype=np.uint8).reshape(40, 60)  # height 40, width 60
    out = np.asarray(decoding.fit_picture(Image.fromarray(arr), (40, 40)))
    np.testing.assert_array_equal(out, arr[:, 10:50])  # no resize needed, centre columns
    up = decoding.fit_picture(Image.fromarray(arr), (80, 80))
    assert up.size == (80, 80)
    with pytest.raises(ImageFileError, match="smaller than"):
        decoding.fit_picture(Image.fromarray(arr), (80, 80), upscale=False)


@pytest.mark.parametrize(
    "text, size", [("64", (64, 64)), ("48x64", (48, 64)), (" 7 X 9 ", (7, 9)), (None, None)]
)
def test_parse_image_size(text, size):
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "64x", "x64", "a", "-3"])
def test_parse_image_size_refuses(text):
    with pytest.raises(ValueError, match="image size"):
        parse_image_size(text)


# --------------------------------------------------------------------------- RecordIO


def test_pack_then_rec_equals_folder(folder, tmp_path, caplog):
    prefix = str(tmp_path / "packed")
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        info = pack_folder(folder, prefix, progress=False)
    assert info["records"] == 4 * PER_CLASS and info["skipped"] == 2
    assert "2 unreadable or corrupt" in caplog.text
    with open(prefix + ".json") as f:
        meta = json.load(f)
    assert meta["classes"] == ["one", "three", "two", "zero"] and meta["channels"] == 3
    opts = ImageOptions(workers=0)
    rec = load_dataset(f"rec:{prefix}", images=opts)
    fold = load_dataset(f"folder:{folder}", images=opts)
    assert rec.class_names == fold.class_names
    np.testing.assert_array_equal(rec.y_test, fold.y_test)
    # The records hold the original file bytes: the same pixels, up to JPEG decoders.
    assert np.abs(rec.x_test - fold.x_test).mean() < 0.01


def test_pack_keeps_train_test_split_and_resizes(tmp_path, digits):
    root = tmp_path / "split"
    write_digits(root / "train", digits, corrupt=False)
    write_digits(root / "test", digits, per_class=3, corrupt=False)
    prefix = str(tmp_path / "r")
    info = pack_folder(f"folder:{root}", prefix, resize=14, quality=90, progress=False)
    assert info["splits"] == {"train": 4 * PER_CLASS, "test": 12}
    b = load_dataset(f"rec:{prefix}", images=ImageOptions(workers=0))
    assert len(b.y_train) == 4 * PER_CLASS and len(b.y_test) == 12
    assert b.x_train.shape[-2:] == (14, 14)  # shorter side 14, then the median crop


def test_pack_refuses_and_writes_nothing(folder, tmp_path):
    prefix = str(tmp_path / "p")
    with pytest.raises(DataError, match="--strict"):
        pack_folder(folder, prefix, strict=True, progress=False)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("p.", ".tmp-"))]
    pack_folder(folder, prefix, progress=False)
    before = open(prefix + ".rec", "rb").read()
    with pytest.raises(DataError, match="already exists"):
        pack_folder(folder, prefix, progress=False)
    assert open(prefix + ".rec", "rb").read() == before


def test_rec_bad_input(folder, tmp_path):
    prefix = str(tmp_path / "p")
    pack_folder(folder, prefix, progress=False)
    os.rename(prefix + ".idx", prefix + ".idx.bak")
    with pytest.raises(DataError, match=r"p\.idx is missing"):
        load_dataset(f"rec:{prefix}")
    not_rec = tmp_path / "fake"
    (tmp_path / "fake.rec").write_bytes(b"PK\x03\x04 this is a zip, not RecordIO")
    (tmp_path / "fake.idx").write_text("0\t0\n")
    with pytest.raises(DataError, match="not a RecordIO file"):
        load_dataset(f"rec:{not_rec}")
    with pytest.raises(DataError, match="RecordIO file not found"):
        load_dataset(f"rec:{tmp_path / 'none'}")


# --------------------------------------------------------------------------- single files


def test_image_files_spec(folder):
    paths = [os.path.join(folder, "one", "01.png"), os.path.join(folder, "two", "02.jpg")]
    b = load_dataset("image:" + ",".join(paths), images=ImageOptions(size=(28, 28), channels=1))
    assert b.x_test.shape == (2, 28, 28) and b.x_test is b.x_train
    with pytest.raises(DataError, match="image file not found"):
        load_dataset("image:" + paths[0] + ",/no/such.png")
    with pytest.raises(DataError, match="broken.png: cannot use this image"):
        load_dataset(
            "image:" + os.path.join(folder, "three", "broken.png"),
            images=ImageOptions(size=(28, 28), channels=1),
        )


# --------------------------------------------------------------------------- layouts


def test_layouts_convert_once(digits, tmp_path, caplog):
    x, y = digits
    grey = x[:40]
    rgb = np.stack([tint(g, (255, 200, 100)) for g in grey])  # (40, 28, 28, 3)
    rgba = np.concatenate([rgb, np.full((40, 28, 28, 1), 255, np.uint8)], -1)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        last = to_canonical_layout(rgb)
    assert last.shape == (40, 3, 28, 28) and "channels-last" in caplog.text
    np.testing.assert_array_equal(last, rgb.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(to_canonical_layout(last), last)  # channels-first kept
    np.testing.assert_array_equal(to_canonical_layout(rgba), last)  # alpha dropped
    np.testing.assert_array_equal(to_canonical_layout(grey[..., None]), grey)
    np.testing.assert_array_equal(to_canonical_layout(grey[:, None]), grey)
    with pytest.raises(DataError, match="neither channels-last"):
        to_canonical_layout(np.zeros((2, 5, 6, 7)))
    np.savez(tmp_path / "rgb.npz", x=rgb, y=y[:40])
    b = load_dataset(f"npz:{tmp_path / 'rgb.npz'}")
    assert b.x_train.shape[1:] == (3, 28, 28)


# --------------------------------------------------------------------------- downstream


def test_train_embed_evaluate_on_a_folder(tmp_path, digits, capsys):
    from gluon_triplet import load_run
    from gluon_triplet.cli import main

    folder = write_digits(tmp_path / "digits", digits, per_class=12)  # 2 test images a class
    logs = tmp_path / "logs"
    flags = ["--dataset", f"folder:{folder}", "--epochs", "1", "-P", "4", "-K", "4"]
    flags += ["--embedding-size", "8", "--logdir", str(logs), "--run-name", "r", "--no-plots"]
    assert main(flags) == 0
    run = logs / "r"
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == "28x28" and config["image_channels"] == 3
    assert config["model"] == "cnn"  # auto: colour images get the CNN
    names = (run / "embedding" / "metadata.tsv").read_text().split()
    assert set(names) <= {"one", "three", "two", "zero"} and len(set(names)) > 1
    metrics = json.loads((run / "metrics.json").read_text())
    per_class = metrics["history"][-1]["test"]["per_class_precision_at_1"]
    assert sorted(per_class) == ["one", "three", "two", "zero"]  # the class names, as documented
    capsys.readouterr()

    # embed single files: decoded to the run's recorded 28x28 RGB, whatever their size
    one = os.path.join(folder, "one", "02.jpg")  # a resized digit (36x42)
    out = tmp_path / "emb.npz"
    assert main(["embed", str(run), "--dataset", f"image:{one}", "--out", str(out)]) == 0
    emb = np.load(out)["embeddings"]
    net, _ = load_run(str(run))
    assert emb.shape == (1, 8)
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert "per-class P@1: one " in text and "zero " in text
    assert main(["evaluate", str(run), "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc["metrics"]["per_class_precision_at_1"]) == ["one", "three", "two", "zero"]
    del net


def test_pack_subcommand(folder, tmp_path, capsys):
    from gluon_triplet.cli import main

    out = str(tmp_path / "cli")
    assert main(["pack", f"folder:{folder}", "--out", out, "-q"]) == 0
    text = capsys.readouterr().out
    assert f"packed {4 * PER_CLASS} images of 4 classes into {out}.rec" in text
    assert "skipped 2 unreadable" in text
    before = os.path.getmtime(out + ".rec")
    assert main(["pack", folder, "--out", out]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {out}.rec already exists; choose another --out"
    ]
    assert os.path.getmtime(out + ".rec") == before
    assert main(["pack", folder, "--out", str(tmp_path / "s"), "--strict"]) == 2
    assert not os.path.exists(tmp_path / "s.rec")


def write_gif_webp(root, digits, per_class=10):
    """``root/<class>/`` with real digits as GIF (grey; some animated, their later
    frames other digits) and lossless WebP (every other one tinted RGB); returns
    ``{path: expected (28, 28, 3) uint8}``."""
    x, y = digits
    value = {"zero": 0, "one": 1, "two": 2, "three": 3}
    expected = {}
    for name in CLASSES:
        os.makedirs(os.path.join(root, name))
        picks = np.flatnonzero(y == value[name])[:per_class]
        for j, i in enumerate(picks):
            grey = Image.fromarray(x[i], "L")
            if j % 2 == 0:
                path = os.path.join(root, name, f"{j:02d}.gif")
                if j % 3 == 0:  # animated: the first frame is the picture
                    others = [Image.fromarray(x[k], "L") for k in np.flatnonzero(y != y[i])[:2]]
                    grey.save(path, save_all=True, append_images=others, duration=100, loop=0)
                else:
                    grey.save(path)
                want = np.repeat(x[i][..., None], 3, axis=-1)
            else:
                path = os.path.join(root, name, f"{j:02d}.webp")
                want = (
                    tint(x[i], (255, 120, 40)) if j % 4 == 1 else np.repeat(x[i][..., None], 3, -1)
                )
                Image.fromarray(want, "RGB").save(path, lossless=True)
            expected[path] = want
    return expected


def test_gif_and_webp_pictures_load_and_train(tmp_path, digits, capsys):
    from gluon_triplet.cli import main

    root = tmp_path / "gw"
    expected = write_gif_webp(root, digits)
    with Image.open(next(p for p in expected if p.endswith("00.gif"))) as im:
        assert im.n_frames == 3  # really animated
    b = load_dataset(f"folder:{root}", images=ImageOptions(workers=0))
    assert len(b.y_train) + len(b.y_test) == len(expected) == 40  # none skipped
    assert b.x_train.shape[1:] == (3, 28, 28)  # tinted WebP: RGB
    # every file reads back exactly (an animated GIF: its first frame)
    got = np.concatenate([b.x_train, b.x_test]).transpose(0, 2, 3, 1)
    want = np.stack(list(expected.values())) / 255
    for picture in want:
        assert np.abs(got - picture).max(axis=(1, 2, 3)).min() < 1e-6
    assert len(np.unique(got.reshape(len(got), -1), axis=0)) == 40
    # streamed, decoded by DataLoader workers, they train too
    logs = tmp_path / "logs"
    flags = ["--dataset", f"folder:{root}", "--epochs", "1", "-P", "4", "-K", "3"]
    flags += ["--embedding-size", "8", "--max-memory", "0", "--workers", "2", "--no-plots"]
    flags += ["--projector-samples", "4", "--logdir", str(logs), "--run-name", "r", "-q"]
    assert main(flags) == 0, capsys.readouterr().err
    metrics = json.loads((logs / "r" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["history"][-1]["train"]["triplets"] > 0
    assert np.isfinite(metrics["history"][-1]["test"]["precision_at_1"])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 600),
    st.integers(1, 600),
    st.integers(1, 10**6),
    st.integers(10**4, 10**9),
)
def test_fit_epoch_pixels_keeps_the_budget_down_to_the_floor(h, w, pictures, budget):
    fitted = fit_epoch_pixels((h, w), pictures, budget)
    if pictures * h * w <= budget:
        assert fitted == (h, w)
        return
    floor = MIN_AUTO_SIZE
    for old, new in zip((h, w), fitted):
        assert new <= old
        assert new == old if old <= floor else (new >= floor and (new % 8 == 0 or new == floor))
    at_floor = any(new == min(old, floor) for old, new in zip((h, w), fitted))
    assert pictures * fitted[0] * fitted[1] <= budget or at_floor


def write_squares(root, classes=2, per_class=20, side=64):
    """``root/c<i>/`` of ``side`` x ``side`` grey pictures, class ``i`` a square of grey ``i``."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for j in range(per_class):
            pixels = rng.integers(0, 60, (side, side), dtype=np.uint8)
            pixels[16:48, 16:48] += np.uint8(100 + 60 * c)
            Image.fromarray(pixels, "L").save(os.path.join(root, f"c{c}", f"{j:02d}.png"))
    return str(root)


def test_automatic_size_is_lowered_when_an_epoch_is_over_budget(tmp_path, monkeypatch, caplog):
    from gluon_triplet.data import imaging

    root = write_squares(tmp_path / "sq")  # 16 training pictures a class: 1 batch of 2 x 16
    assert 32 * 64 * 64 > 100_000
    monkeypatch.setattr(imaging, "EPOCH_PIXELS", 100_000)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        lowered = load_dataset(f"folder:{root}", images=ImageOptions(workers=0, pk=(None, 16)))
    assert lowered.x_train.shape[-2:] == (48, 48)  # 64 * sqrt(100000 / 131072) = 55.9
    assert "image size lowered to 48x48" in caplog.text and "32 pictures" in caplog.text
    # The budget binds only the automatic size, and only with P x K batches to cost.
    for options in (ImageOptions(workers=0), ImageOptions(workers=0, pk=(None, 16), size=(64, 64))):
        assert load_dataset(f"folder:{root}", images=options).x_train.shape[-2:] == (64, 64)


def test_image_options_cost_the_online_miners_batches():
    from gluon_triplet.config import Config

    assert ImageOptions.from_config(Config(pk_classes=4, pk_samples=8)).pk == (4, 8)
    assert ImageOptions.from_config(Config(miner="offline")).pk is None
