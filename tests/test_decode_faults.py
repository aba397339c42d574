"""Faults on the picture-decoding side: the pixel limit on every path, folder links that
loop or leave their class, bit depths, comma file names, libpng's noise, damaged files.
Every picture is made here, tiny; the decompression bomb is a header only."""

import io
import logging
import os
import struct
import tempfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gluon_triplet.cli import main
from gluon_triplet.data import decoding, fastpng
from gluon_triplet.data.datasets import load_dataset, split_image_paths
from gluon_triplet.data.decoding import (
    MAX_PIXELS,
    DecodedImages,
    ImageOptions,
    check_pixels,
    decode_picture,
    picture_size,
)
from gluon_triplet.data.folder import scan_folder
from gluon_triplet.data.recordio import pack_folder
from gluon_triplet.errors import DataError, ImageFileError, TooManyPixels


def chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_header(width, height, depth=8, colour=0):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return fastpng.PNG_SIGNATURE + chunk(b"IHDR", ihdr)


def encode(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def grey_folder(root, classes=3, per_class=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(50 + 70 * c, 20, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, f"c{c}", f"{i}.png"))
    return str(root)


@pytest.fixture(autouse=True)
def plain_logger():
    """The package's logger as a library leaves it (the CLI points it at its stderr)."""
    log = logging.getLogger("gluon_triplet")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:], log.propagate = [], True
    yield
    log.handlers[:], log.propagate, log.level = saved


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ----------------------------------------------------------------------------- pixel limit


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM"]),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "1"]),
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    as_path=st.booleans(),
)
def test_picture_size_reads_the_header_as_pillow_does(fmt, mode, width, height, as_path):
    img = Image.new("RGB", (width, height), (200, 40, 90)).convert(mode)
    try:
        data = encode(img, fmt)
    except (OSError, ValueError):  # a mode the format cannot store
        return
    if as_path:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"p.{fmt.lower()}")
            with open(path, "wb") as f:
                f.write(data)
            assert picture_size(path) == (width, height)
    assert picture_size(data) == Image.open(io.BytesIO(data)).size == (width, height)


def test_a_jpeg_size_is_found_past_exif_and_progressive_frames():
    img = Image.new("RGB", (123, 45), (1, 2, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation; the stored frame stays 123x45
    for kw in ({"exif": exif}, {"progressive": True}, {"quality": 5}):
        assert picture_size(encode(img, "JPEG", **kw)) == (123, 45)


def test_a_30000x30000_png_header_is_refused_without_decoding():
    # A real bomb's header with a few bytes of garbage for pixels: any decoder that ran
    # would fail on the data ("corrupt"); the refusal comes from the header alone.
    bomb = png_header(30000, 30000) + chunk(b"IDAT", b"not zlib") + chunk(b"IEND", b"")
    assert picture_size(bomb) == (30000, 30000)
    with pytest.raises(TooManyPixels, match=r"30000x30000 is 900000000 pixels, above the limit"):
        check_pixels(30000, 30000, MAX_PIXELS)
    with pytest.raises(TooManyPixels):
        decode_picture(bomb, 1)

    class OneFile:
        def __len__(self):
            return 1

        def encoded(self, i):
            return bomb

        def name(self, i):
            return "bomb.png"

    for channels in (1, 3):  # grey would go to OpenCV, RGB through Pillow
        dataset = DecodedImages(OneFile(), (8, 8), channels)
        with pytest.raises(TooManyPixels):
            dataset.picture(0)
        assert dataset.decode_batch(np.array([0]))[1].tolist() == [decoding.TOO_LARGE]


def test_check_pixels_is_the_product_against_the_limit():
    check_pixels(100, 10, 1000)
    with pytest.raises(TooManyPixels):
        check_pixels(100, 11, 1000)
    assert issubclass(TooManyPixels, ImageFileError)


@pytest.fixture
def with_big(tmp_path):
    """Three classes of ten 16x16 pictures, and one 40x40 (1600 pixels) in c0."""
    root = grey_folder(tmp_path / "set", per_class=10)
    Image.new("L", (40, 40), 128).save(os.path.join(root, "c0", "zz-big.png"))
    return root


@pytest.mark.parametrize("max_memory", [2.0, 0.0], ids=["in memory", "streamed"])
def test_a_picture_above_max_pixels_is_skipped_with_one_warning(with_big, caplog, max_memory):
    options = ImageOptions(size=(16, 16), workers=0, max_pixels=1000, max_memory=max_memory)
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        data = load_dataset(f"folder:{with_big}", images=options)
    assert len(data.y_train) + len(data.y_test) == 30
    assert not any("zz-big" in p for p in data.paths_train + data.paths_test)
    found = [w for w in warnings_of(caplog) if "--max-pixels" in w]
    assert len(found) == 1 and "zz-big.png (40x40)" in found[0] and "skipped" in found[0]
    # the default limit keeps it
    data = load_dataset(f"folder:{with_big}", images=ImageOptions(size=(16, 16), workers=0))
    assert len(data.y_train) + len(data.y_test) == 31


def test_strict_refuses_a_picture_above_max_pixels(with_big):
    options = ImageOptions(size=(16, 16), workers=0, max_pixels=1000, strict=True)
    with pytest.raises(DataError, match="above --max-pixels 1000.*--strict refuses them"):
        load_dataset(f"folder:{with_big}", images=options)


def test_pack_applies_the_same_limit(with_big, tmp_path):
    info = pack_folder(with_big, str(tmp_path / "a"), progress=False, max_pixels=1000)
    assert (info["records"], info["skipped"]) == (30, 1)
    out = str(tmp_path / "b")
    assert main(["pack", with_big, "--out", out, "--max-pixels", "1000", "-q"]) == 0
    data = load_dataset(f"rec:{out}", images=ImageOptions(size=(16, 16), workers=0))
    assert len(data.y_train) + len(data.y_test) == 30


def test_training_skips_it_and_image_files_refuse_it(with_big, tmp_path, capsys):
    logs = str(tmp_path / "logs")
    argv = ["--dataset", f"folder:{with_big}", "--image-size", "16", "--max-pixels", "1000"]
    argv += ["--epochs", "1", "--workers", "0", "--logdir", logs, "--run-name", "r"]
    argv += ["--projector-samples", "0", "--no-plots", "-q", "-P", "3", "-K", "2"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "WARNING: 1 image(s)" in err and "zz-big.png (40x40)" in err, err
    run = os.path.join(logs, "r")
    big = os.path.join(with_big, "c0", "zz-big.png")
    out = str(tmp_path / "e.npz")
    assert main(["embed", run, "--dataset", f"image:{big}", "--out", out, "-q"]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert lines == [
        f"error: {big}: cannot use this image (40x40 is 1600 pixels, above the limit of 1000 "
        "(--max-pixels))"
    ]
    assert not os.path.exists(out)


# ----------------------------------------------------------------------------- folder links


def count_pictures(root):
    return sum(f.endswith(".png") for _, _, files in os.walk(root) for f in files)


def test_a_link_up_to_the_root_is_not_followed(tmp_path, caplog):
    root = grey_folder(tmp_path / "set", per_class=12)
    os.symlink("..", os.path.join(root, "c0", "up"))
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        scan = scan_folder(root)
    assert len(scan.paths) == count_pictures(root) == 36
    for path, label in zip(scan.paths, scan.labels):  # labelled by the folder it is in
        assert os.path.relpath(path, root).split(os.sep)[0] == scan.class_names[label]
    (warning,) = warnings_of(caplog)
    assert "1 folder link(s) not followed: c0/up (leaves its class folder" in warning


def test_two_loops_end_and_links_inside_a_class_are_followed_once(tmp_path, caplog):
    root = grey_folder(tmp_path / "set")
    os.makedirs(os.path.join(root, "c1", "sub"))
    Image.new("L", (16, 16), 7).save(os.path.join(root, "c1", "sub", "x.png"))
    os.symlink("..", os.path.join(root, "c0", "up"))
    os.symlink(".", os.path.join(root, "c1", "sub", "self"))
    os.symlink("sub", os.path.join(root, "c1", "zz-again"))  # the same real folder twice
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        scan = scan_folder(root)
    assert len(scan.paths) == 19 and len(set(map(os.path.realpath, scan.paths))) == 19
    assert os.path.join(root, "c1", "sub", "x.png") in scan.paths
    (warning,) = warnings_of(caplog)
    assert "3 folder link(s) not followed: c0/up (leaves its class folder" in warning
    assert "c1/sub/self (a folder already listed)" in warning
    assert "c1/zz-again (a folder already listed)" in warning


def test_a_link_out_of_the_root_is_named_and_class_folder_links_work(tmp_path, caplog):
    outside = grey_folder(tmp_path / "elsewhere", classes=1, seed=3)
    root = grey_folder(tmp_path / "set", classes=2)
    os.symlink(os.path.join(outside, "c0"), os.path.join(root, "c1", "more"))
    os.symlink(os.path.join(outside, "c0"), os.path.join(root, "linked"))  # a whole class
    os.symlink(os.path.join(outside, "c0", "0.png"), os.path.join(root, "c0", "file.png"))
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        scan = scan_folder(root)
    assert scan.class_names == ("c0", "c1", "linked")
    assert np.bincount(scan.labels).tolist() == [7, 6, 6]  # a linked file is a picture
    (warning,) = warnings_of(caplog)
    assert f"c1/more (leaves the dataset root: {os.path.realpath(outside)}/c0)" in warning


# ----------------------------------------------------------------------------- bit depths

GRADIENT16 = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)


def expected_grey(values, full_scale):
    return np.clip(np.rint(values.astype(np.float64) * 255 / full_scale), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_grey_png_is_scaled_not_clipped(channels):
    data = encode(Image.fromarray(GRADIENT16))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    got = np.asarray(decode_picture(data, channels))
    want = expected_grey(GRADIENT16, 65535)
    assert np.array_equal(got if channels == 1 else got[..., 0], want)
    if channels == 3:
        assert np.array_equal(got[..., 0], got[..., 2])
    assert abs(got.mean() - 127.5) < 1  # was 254.5 in RGB (clipped to white)


@pytest.mark.parametrize("mode, values, scale", [("I", 65535, 65535.0), ("F", 1.0, 1.0)])
def test_modes_i_and_f_are_scaled_from_their_full_range(mode, values, scale):
    arr = (np.linspace(0, values, 64).reshape(8, 8)).astype(np.float32 if mode == "F" else np.int32)
    data = encode(Image.fromarray(arr, mode), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    for channels in (1, 3):
        got = np.asarray(decode_picture(data, channels))
        assert np.array_equal(got if channels == 1 else got[..., 1], expected_grey(arr, scale))


def test_one_bit_and_16_bit_rgb_pngs():
    bits = np.random.default_rng(0).integers(0, 2, (9, 11)).astype(bool)
    got = np.asarray(decode_picture(encode(Image.fromarray(bits)), 1))
    assert np.array_equal(got, bits * np.uint8(255))
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.random.default_rng(1).integers(0, 65536, (7, 5, 3)).astype(np.uint16)
    ok, png = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV stores BGR
    got = np.asarray(decode_picture(png.tobytes(), 3))
    assert np.array_equal(got, (rgb16 >> 8).astype(np.uint8))  # the high byte


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_opencv_and_pillow_give_the_same_8_bit_pixels(mode):
    if not fastpng.available():
        pytest.skip("opencv-python-headless is not installed")
    rng = np.random.default_rng(2)
    shape = (13, 17) if mode == "L" else (13, 17, len(mode))
    data = encode(Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode))
    for channels in (1, 3) if mode in ("L", "LA") else (3,):
        fast = fastpng.decode_png(data, channels)
        assert fast is not None
        assert np.array_equal(fast, np.asarray(decode_picture(data, channels)))


def test_a_16_bit_grey_picture_in_a_colour_folder_is_not_white(tmp_path):
    root = grey_folder(tmp_path / "set", classes=2)
    Image.new("RGB", (16, 16), (10, 200, 30)).save(os.path.join(root, "c0", "colour.png"))
    Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(os.path.join(root, "c1", "d.png"))
    data = load_dataset(f"folder:{root}", images=ImageOptions(size=(16, 16), workers=0))
    paths = list(data.paths_train + data.paths_test)
    x = np.concatenate([data.x_train, data.x_test])
    assert x.shape[1] == 3
    deep = x[paths.index(os.path.join(root, "c1", "d.png"))]
    assert np.allclose(deep, 128 / 255)  # round(32768 / 257) = 128, not 255


# ----------------------------------------------------------------------------- other damage


def test_damaged_and_unusual_files_in_a_folder(tmp_path, caplog):
    root = grey_folder(tmp_path / "set", classes=2)
    c0 = os.path.join(root, "c0")
    rgb = np.random.default_rng(4).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    whole = encode(Image.fromarray(rgb), "JPEG")
    open(os.path.join(c0, "truncated.jpg"), "wb").write(whole[: len(whole) // 2])
    open(os.path.join(c0, "empty.png"), "wb").close()
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    palette.save(os.path.join(c0, "palette.png"), transparency=0)
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(os.path.join(c0, "cmyk.jpg"))
    options = ImageOptions(size=(16, 16), workers=0, channels=3)
    with caplog.at_level(logging.WARNING, logger="gluon_triplet"):
        data = load_dataset(f"folder:{root}", images=options)
    (warning,) = warnings_of(caplog)
    assert warning.startswith("2 unreadable or corrupt image(s)")
    assert "empty.png" in warning and "truncated.jpg" in warning
    paths = list(data.paths_train + data.paths_test)
    x = np.concatenate([data.x_train, data.x_test])
    red = x[paths.index(os.path.join(c0, "palette.png"))][:, 0, 0] * 255
    assert np.allclose(red, (250, 10, 10))
    cmyk = x[paths.index(os.path.join(c0, "cmyk.jpg"))][:, 8, 8] * 255
    assert cmyk[0] > 240 and cmyk[1] < 15 and cmyk[2] < 15  # cyan-free, full magenta+yellow
    with pytest.raises(ImageFileError, match=r"^empty file$"):
        decode_picture(b"", 3)
    with pytest.raises(ImageFileError) as e:
        decode_picture(b"not a picture", 3)
    assert "0x" not in str(e.value)  # no "<_io.BytesIO object at 0x...>"


def bad_iccp_png():
    """An 8x8 grey PNG with an ICC profile libpng calls too short."""
    plain = encode(Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)))
    iccp = chunk(b"iCCP", b"bad\x00\x00" + zlib.compress(b"x" * 200))
    return plain[:33] + iccp + plain[33:]


def test_libpng_says_nothing_on_stderr(tmp_path, capfd):
    root = grey_folder(tmp_path / "set", classes=2)
    noisy = bad_iccp_png()
    open(os.path.join(root, "c0", "iccp.png"), "wb").write(noisy)
    plain = encode(Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)))
    open(os.path.join(root, "c1", "no-iend.png"), "wb").write(plain[:-12])
    assert fastpng.png_layout(noisy) is None and fastpng.png_layout(plain[:-12]) is None
    assert fastpng.png_layout(plain) == 1
    capfd.readouterr()
    data = load_dataset(f"folder:{root}", images=ImageOptions(size=(8, 8), workers=0))
    assert len(data.y_train) + len(data.y_test) == 14  # both decoded (by Pillow)
    out, err = capfd.readouterr()
    assert "libpng" not in err and "WARN" not in err, err
    want = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert np.array_equal(np.asarray(decode_picture(noisy, 1)), want)


# ----------------------------------------------------------------------------- commas


def test_image_paths_with_commas(tmp_path):
    a = str(tmp_path / "a,b.png")
    c = str(tmp_path / "c.png")
    for p in (a, c):
        Image.new("L", (8, 8), 3).save(p)
    assert split_image_paths(a) == [a]
    assert split_image_paths(f"{a},{c}") == [a, c]
    assert split_image_paths(f"{c},{a}") == [c, a]
    missing = str(tmp_path / "x")
    assert split_image_paths(f"{missing},{c}") == [missing, c]
    data = load_dataset(f"image:{a},{c}", images=ImageOptions(size=(8, 8), channels=1))
    assert data.paths_test == (a, c)


def test_embed_and_search_take_a_file_name_with_a_comma(with_big, tmp_path, capsys):
    logs = str(tmp_path / "logs")
    argv = ["--dataset", f"folder:{with_big}", "--image-size", "16", "--epochs", "1"]
    argv += ["--workers", "0", "--logdir", logs, "--run-name", "r", "-P", "3", "-K", "2"]
    argv += ["--projector-samples", "0", "--no-plots", "-q", "--model", "mlp", "--hidden", "8"]
    assert main(argv) == 0
    run = os.path.join(logs, "r")
    odd = str(tmp_path / "query, with comma.png")
    Image.new("L", (16, 16), 90).save(odd)
    out = str(tmp_path / "e.npz")
    assert main(["embed", run, "--dataset", f"image:{odd}", "--out", out, "-q"]) == 0
    assert np.load(out)["embeddings"].shape[0] == 1
    ix = str(tmp_path / "ix")
    assert main(["index", run, "--dataset", f"folder:{with_big}", "--out", ix, "-q"]) == 0
    capsys.readouterr()
    assert main(["search", ix, "--query", odd, "-k", "2", "--json", "-q"]) == 0
    assert f'"query": "{odd}"' in capsys.readouterr().out
