"""OpenCV's PNG decoding gives Pillow's pixels, and leaves every other picture to Pillow."""

import io

import numpy as np
import pytest
from PIL import Image
from test_images import digits, tint, write_digits  # noqa: F401

from gluon_triplet.data import fastpng
from gluon_triplet.data.decoding import CORRUPT, DecodedImages
from gluon_triplet.data.decoding import decode_picture as _decode
from gluon_triplet.data.folder import FolderImages


def _png(img, **options):
    buf = io.BytesIO()
    img.save(buf, format="PNG", **options)
    return buf.getvalue()


def _real_pictures(digits):  # noqa: F811
    """Real digits as a PNG of each plain 8-bit colour type (alpha from the strokes)."""
    x, _ = digits
    grey, other = x[0], x[1]
    rgb = tint(grey, (255, 120, 40))
    return {
        "L": Image.fromarray(grey, "L"),
        "LA": Image.fromarray(np.stack([grey, other], -1), "LA"),
        "RGB": Image.fromarray(rgb, "RGB"),
        "RGBA": Image.fromarray(np.concatenate([rgb, other[..., None]], -1), "RGBA"),
    }


def test_plain_pngs_decode_to_pillows_pixels(digits):  # noqa: F811
    pytest.importorskip("cv2")
    for mode, img in _real_pictures(digits).items():
        buf = _png(img)
        for channels in (1, 3):
            pillow = np.asarray(_decode(buf, channels))
            fast = fastpng.decode_png(buf, channels)
            if channels == 1 and mode in ("RGB", "RGBA"):
                assert fast is None, mode  # colour to grey: Pillow's rounding, Pillow's job
                continue
            assert fast is not None, (mode, channels)
            assert fast.dtype == np.uint8 and fast.shape == pillow.shape, (mode, channels)
            np.testing.assert_array_equal(fast, pillow, err_msg=f"{mode} as {channels}")


def test_png_layout_refuses_what_pillow_must_decode(digits):  # noqa: F811
    pictures = _real_pictures(digits)
    assert [fastpng.png_layout(_png(pictures[m])) for m in ("L", "LA", "RGB", "RGBA")] == [
        1,
        2,
        3,
        4,
    ]
    exif = Image.Exif()
    exif[0x0112] = 6
    x, _ = digits
    refused = {
        "palette": _png(pictures["RGB"].convert("P")),
        "16-bit": _png(Image.fromarray(x[0].astype(np.uint16) * 257)),
        "tRNS": _png(pictures["RGB"], transparency=(0, 0, 0)),
        "eXIf": _png(pictures["L"], exif=exif),
        "JPEG": _jpeg(pictures["L"]),
        "short": _png(pictures["L"])[:20],
        "not a picture": b"\x00" * 100,
    }
    for what, buf in refused.items():
        assert fastpng.png_layout(buf) is None, what
        assert fastpng.decode_png(buf, 1) is None and fastpng.decode_png(buf, 3) is None, what


def _jpeg(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_exif_orientation_of_a_png_is_still_applied(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:5, :, 0] = 255  # a red band along the top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = str(tmp_path / "turned.png")
    Image.fromarray(pixels).save(path, exif=exif)
    picture = DecodedImages(FolderImages([path]), (30, 20), 3).picture(0)
    assert picture.shape == (3, 30, 20)
    assert picture[0, :, -3:].mean() > 200 and picture[0, :, :3].mean() < 50


def test_a_damaged_png_is_corrupt_as_before(tmp_path, digits):  # noqa: F811
    x, _ = digits
    whole = _png(Image.fromarray(x[0], "L"))
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])  # IDAT cut in the middle, no IEND
    assert fastpng.decode_png(path.read_bytes(), 1) is None
    pixels, status = DecodedImages(FolderImages([str(path)]), (28, 28), 1).decode_batch([0])
    assert status.tolist() == [CORRUPT] and not pixels.any()


@pytest.mark.parametrize("size,channels", [((28, 28), 1), ((28, 28), 3), ((32, 24), 3)])
def test_decoded_images_equal_with_and_without_opencv(
    tmp_path,
    digits,  # noqa: F811
    monkeypatch,
    size,
    channels,
):
    """A folder of PNG and JPEG, grey and tinted, some resized, two corrupt: the same
    pixels and statuses whether plain PNGs go through OpenCV or not (the 32x24 case
    resizes every picture, from OpenCV's pixels or Pillow's)."""
    pytest.importorskip("cv2")
    from gluon_triplet.data import decoding, folder

    root = write_digits(tmp_path / "d", digits, per_class=6)
    scan = folder.scan_folder(root)
    dataset = DecodedImages(FolderImages(scan.paths), size, channels)
    items = np.arange(len(dataset))
    fast = dataset.decode_batch(items)
    reader = FolderImages(scan.paths)
    taken = [i for i in items if fastpng.decode_png(reader.encoded(i), channels) is not None]
    assert len(taken) >= 8  # the fast path did run
    monkeypatch.setattr(decoding, "decode_png", lambda buf, channels: None)
    pillow = dataset.decode_batch(items)
    np.testing.assert_array_equal(fast[1], pillow[1])
    assert (pillow[1] == CORRUPT).sum() == 2
    np.testing.assert_array_equal(fast[0], pillow[0])


def test_without_opencv_pillow_decodes_everything(monkeypatch, digits):  # noqa: F811
    monkeypatch.setattr(fastpng, "_cv2", lambda: None)
    assert not fastpng.available()
    buf = _png(_real_pictures(digits)["L"])
    assert fastpng.png_layout(buf) == 1 and fastpng.decode_png(buf, 1) is None
