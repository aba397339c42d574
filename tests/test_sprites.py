"""sprites: the pictures of the projector's sprite, thumbnails when they would not fit."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import block_mean

from gluon_triplet.runs.sprites import MAX_SPRITE_SIZE, sprite_images


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((7, 28, 28), (7, 1, 28, 28)),
        ((7, 784), (7, 1, 28, 28)),
        ((7, 16), (7, 1, 4, 4)),
        ((7, 28, 28, 1), (7, 1, 28, 28)),
        ((7, 32, 32, 3), (7, 3, 32, 32)),
        ((7, 1, 28, 28), (7, 1, 28, 28)),
        ((7, 3, 32, 32), (7, 3, 32, 32)),
        ((7, 3, 8, 3), (7, 3, 8, 3)),  # ambiguous: MXNet's NCHW wins
    ],
)
def test_sprite_images_shapes(shape, expected):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    out = sprite_images(x)
    assert out.shape == expected
    assert out.dtype == np.uint8


def test_sprite_images_keeps_pixels_and_layout():
    x = np.random.default_rng(0).random((4, 6, 6, 3)).astype(np.float32)
    as8 = np.rint(x * 255).astype(np.uint8)
    np.testing.assert_array_equal(sprite_images(x), as8.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(sprite_images(x[..., 0].reshape(4, 36))[:, 0], as8[..., 0])


def test_sprite_images_scales_uint8_and_out_of_range():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    np.testing.assert_array_equal(sprite_images(x)[0, 0], x[0])
    z = np.array([[[-2.0, 2.0], [0.0, 1.0]]], dtype=np.float32)
    np.testing.assert_array_equal(sprite_images(z)[0, 0], [[0, 255], [128, 191]])
    # a constant picture outside [0, 1] has no range to stretch: black, not NaN
    assert not sprite_images(np.full((2, 3, 3), 7.0)).any()


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((5, 10)),  # not a square
        np.zeros((5, 1)),  # a 1x1 "image"
        np.zeros((5,)),
        np.zeros((0, 28, 28)),
        np.zeros((5, 28, 28, 5)),  # 5 channels
        np.zeros((5, 2, 28, 28)),
        np.zeros((2, 2, 2, 2, 2)),
        np.array([["a", "b", "c", "d"]]),
        np.full((2, 4), np.nan),
    ],
)
def test_sprite_images_none(x):
    assert sprite_images(x) is None


def test_sprite_images_fit_unchanged_up_to_the_limit():
    # ceil(sqrt(N)) * 28 px per side: 292 tiles fit in 8192 px, 293 do not
    assert 292 * 28 <= MAX_SPRITE_SIZE < 293 * 28
    x = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    # the same rule at a small limit: 6 tiles of 28 px fit in 168 px, not in 167
    np.testing.assert_array_equal(sprite_images(x, max_size=168)[:, 0], x)
    assert sprite_images(x, max_size=167).shape == (30, 1, 27, 27)


def test_sprite_images_thumbnails_of_large_pictures():
    # 12 colour pictures of 96 x 64 (H x W) on a sprite of at most 100 px: 4 tiles a
    # side, so square cells of 25 px; a 96 x 64 picture becomes 25 x 17, centred
    rng = np.random.default_rng(0)
    smooth = block_mean(rng.random((12, 3, 96 * 8, 64 * 8)), 8)  # (12, 3, 96, 64)
    out = sprite_images(smooth.transpose(0, 2, 3, 1), max_size=100)  # channels-last in
    assert out.shape == (12, 3, 25, 25) and out.dtype == np.uint8
    th, tw = 25, round(64 * 25 / 96)
    left = (25 - tw) // 2
    assert (tw, left) == (17, 4)
    assert not out[..., :left].any() and not out[..., left + tw :].any()
    inner = out[..., left : left + tw].astype(np.float64) / 255
    assert (inner > 0).all()
    # colour and content kept: each thumbnail matches an area-average of its picture,
    # channel by channel (brute force: every output pixel, the mean of its source box)
    ys = (np.arange(th + 1) * 96 / th).round().astype(int)
    xs = (np.arange(tw + 1) * 64 / tw).round().astype(int)
    brute = np.array(
        [
            [[smooth[i, c, ys[r] : ys[r + 1], xs[q] : xs[q + 1]].mean() for q in range(tw)]
             for r in range(th)]
            for i in range(12)
            for c in range(3)
        ]
    ).reshape(12, 3, th, tw)  # fmt: skip
    assert np.abs(inner - brute).max() < 0.08
    np.testing.assert_allclose(inner.mean(axis=(2, 3)), smooth.mean(axis=(2, 3)), atol=0.02)


def test_sprite_images_thumbnails_at_the_projector_limit():
    # Two grey strips 8200 px tall, 1 px wide: 2 tiles a side of 4096 px cells (the real limit)
    out = sprite_images(np.full((2, 8200, 1), 200, np.uint8))
    assert out.shape == (2, 1, 4096, 4096)
    assert 2 * out.shape[-1] <= MAX_SPRITE_SIZE
    rows = np.flatnonzero(out[0, 0].any(axis=1))
    cols = np.flatnonzero(out[0, 0].any(axis=0))
    assert len(rows) == 4096 and len(cols) == 1 and cols[0] == 2047  # tall, 1 px wide, centred


def test_sprite_images_none_when_a_cell_would_vanish():
    # 17 samples need 5 tiles a side: a 4 px sprite has no pixel for each
    assert sprite_images(np.ones((16, 8, 8)), max_size=4).shape == (16, 1, 1, 1)
    assert sprite_images(np.ones((17, 8, 8)), max_size=4) is None
