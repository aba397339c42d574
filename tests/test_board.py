"""board: mxboard scalars and projector files, read back by TensorBoard itself."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import block_mean

from gluon_triplet.runs.board import BoardCallback, write_projector
from gluon_triplet.runs.sprites import sprite_images

M, D, EPOCHS = 10, 5, 3
CLASS_NAMES = ("zero", "one", "two")


def _records():
    out = [
        {"epoch": 0, "time": 0.0, "train": {}, "test": {"precision_at_1": 0.1, "map_at_r": 0.05}}
    ]
    for k in range(1, EPOCHS + 1):
        out.append(
            {
                "epoch": k,
                "time": 1.5 * k,
                "train": {
                    "loss": 1.0 / k,
                    "active_fraction": 0.5 / k,
                    "triplets": 100,
                    "per_class": {"a": 1.0},
                    "curve": [1.0, 2.0],
                },
                "test": {"precision_at_1": 0.1 + 0.2 * k, "map_at_r": 0.05 * k},
            }
        )
    return out


def _fake_trainer(dim_in, dim_out=D, seed=1):
    w = np.random.default_rng(seed).standard_normal((dim_in, dim_out)).astype(np.float32)

    def embed(x):
        return (np.asarray(x, dtype=np.float32).reshape(len(x), -1) @ w).astype(np.float32)

    return SimpleNamespace(history=[], embed=embed, epoch=0)


def _train(callback, trainer):
    """Drive the hooks the way TripletTrainer.fit does."""
    records = _records()
    trainer.history.append(records[0])
    callback.on_train_begin(trainer)
    for record in records[1:]:
        trainer.epoch = record["epoch"]
        callback.on_epoch_begin(trainer)
        trainer.history.append(record)
        callback.on_epoch_end(trainer)
    callback.on_train_end(trainer)


def _read_tsv(path):
    return np.loadtxt(path, delimiter="\t", ndmin=2, dtype=np.float64)


def _read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def _read_config(run_dir):
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = ProjectorConfig()
    with open(os.path.join(run_dir, "projector_config.pbtxt")) as f:
        text_format.Parse(f.read(), config)
    return {e.tensor_name: e for e in config.embeddings}, config


def _sprite(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    """One finished fake training written by BoardCallback into <logdir>/run."""
    logdir = tmp_path_factory.mktemp("board")
    run_dir = str(logdir / "run")
    rng = np.random.default_rng(0)
    x = rng.random((M, 28, 28)).astype(np.float32)
    y = np.arange(M, dtype=np.int64) % len(CLASS_NAMES)
    trainer = _fake_trainer(28 * 28)
    callback = BoardCallback(run_dir, x, y, class_names=CLASS_NAMES)
    _train(callback, trainer)
    return SimpleNamespace(
        logdir=str(logdir), run_dir=run_dir, x=x, y=y, emb=trainer.embed(x), callback=callback
    )


# --------------------------------------------------------------------------- files on disk


def test_projector_config(board_run):
    with open(os.path.join(board_run.run_dir, "projector_config.pbtxt")) as f:
        text = f.read()
    assert text.count("embeddings {") == 2
    for name in ("raw_input", "embedding"):
        assert f'tensor_name: "{name}"' in text
        assert f'tensor_path: "{name}/tensors.tsv"' in text
        assert f'metadata_path: "{name}/metadata.tsv"' in text
    # one sprite, written with raw_input; the embedding points at it
    assert text.count('image_path: "raw_input/sprite.png"') == 2
    embeddings, _ = _read_config(board_run.run_dir)
    assert sorted(embeddings) == ["embedding", "raw_input"]
    for e in embeddings.values():
        assert list(e.sprite.single_image_dim) == [28, 28]


def test_tensors_tsv(board_run):
    raw = _read_tsv(os.path.join(board_run.run_dir, "raw_input", "tensors.tsv"))
    emb = _read_tsv(os.path.join(board_run.run_dir, "embedding", "tensors.tsv"))
    assert raw.shape == (M, 28 * 28)
    assert emb.shape == (M, D)
    np.testing.assert_allclose(raw, board_run.x.reshape(M, -1), rtol=1e-6)
    np.testing.assert_allclose(emb, board_run.emb, rtol=1e-6)


def test_metadata_tsv(board_run):
    expected = [CLASS_NAMES[v] for v in board_run.y]
    for name in ("raw_input", "embedding"):
        assert _read_lines(os.path.join(board_run.run_dir, name, "metadata.tsv")) == expected


def test_sprite_png(board_run):
    side = math.ceil(math.sqrt(M)) * 28
    expected = np.rint(board_run.x * 255).astype(np.uint8)
    sprite = _sprite(os.path.join(board_run.run_dir, "raw_input", "sprite.png"))
    assert sprite.shape == (side, side, 3)
    np.testing.assert_array_equal(sprite[:28, :28, 0], expected[0])
    np.testing.assert_array_equal(sprite[:28, :28, 2], expected[0])
    # image 9 is the second tile of the third row of four
    np.testing.assert_array_equal(sprite[56:84, 28:56, 1], expected[9])
    # tiles past the last image, and the row mxboard leaves out, are blank
    assert not sprite[56:, 56:].any()
    assert not sprite[84:].any()
    assert not os.path.exists(os.path.join(board_run.run_dir, "embedding", "sprite.png"))


# mxboard's generated protos and tensorboard.compat.proto define the same message names and
# cannot be loaded into one process, so the event file is read in a fresh interpreter.
_READ_SCALARS = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"""


def _read_scalars(run_dir):
    out = subprocess.run(
        [sys.executable, "-c", _READ_SCALARS, run_dir],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_scalars(board_run):
    scalars = _read_scalars(board_run.run_dir)
    records = _records()
    expected = {
        "train/loss": {r["epoch"]: r["train"]["loss"] for r in records[1:]},
        "train/active_fraction": {r["epoch"]: r["train"]["active_fraction"] for r in records[1:]},
        "train/triplets": {r["epoch"]: 100 for r in records[1:]},
        "test/precision_at_1": {r["epoch"]: r["test"]["precision_at_1"] for r in records},
        "test/map_at_r": {r["epoch"]: r["test"]["map_at_r"] for r in records},
        "time/epoch_seconds": {r["epoch"]: r["time"] for r in records[1:]},
    }
    assert sorted(scalars) == sorted(expected)
    for tag, by_step in expected.items():
        got = dict(scalars[tag])
        assert sorted(got) == sorted(by_step), tag
        for step, value in by_step.items():
            assert got[step] == pytest.approx(value, rel=1e-6), (tag, step)


def test_writer_closed(board_run):
    assert board_run.callback._writer is None


def test_projector_every(tmp_path, monkeypatch):
    import mxboard.writer

    sprites = []
    make_sprite = mxboard.writer._make_sprite_image
    monkeypatch.setattr(
        mxboard.writer,
        "_make_sprite_image",
        lambda images, path: sprites.append(path) or make_sprite(images, path),
    )
    x = np.random.default_rng(2).random((4, 784)).astype(np.float32)
    y = np.array([3, 1, 4, 1])
    trainer = _fake_trainer(784, dim_out=3)
    _train(BoardCallback(str(tmp_path), x, y, projector_every=2), trainer)
    embeddings, _ = _read_config(str(tmp_path))
    # every 2 epochs of 3, and the final one
    assert sorted(embeddings) == ["embedding", "embedding_000002", "raw_input"]
    for name, e in embeddings.items():
        assert _read_lines(tmp_path / name / "metadata.tsv") == ["3", "1", "4", "1"]
        assert e.sprite.image_path == "raw_input/sprite.png"
        assert list(e.sprite.single_image_dim) == [28, 28]
    # the sprite does not change between epochs: written once, with raw_input
    assert sprites == [str(tmp_path / "raw_input")]
    assert _sprite(tmp_path / "raw_input" / "sprite.png").shape == (56, 56, 3)
    np.testing.assert_allclose(
        _read_tsv(tmp_path / "embedding" / "tensors.tsv"), trainer.embed(x), rtol=1e-6
    )
    # A resumed run (same directory, raw_input already there) points at the same sprite.
    _train(BoardCallback(str(tmp_path), x, y, projector_every=1), _fake_trainer(784, 3))
    embeddings, _ = _read_config(str(tmp_path))
    assert len(embeddings) == 5 and len(sprites) == 1
    assert {e.sprite.image_path for e in embeddings.values()} == {"raw_input/sprite.png"}


def test_no_sprite_for_non_images(tmp_path):
    x = np.random.default_rng(3).random((6, 10)).astype(np.float32)
    _train(BoardCallback(str(tmp_path), x, np.arange(6)), _fake_trainer(10))
    embeddings, _ = _read_config(str(tmp_path))
    assert sorted(embeddings) == ["embedding", "raw_input"]
    assert not embeddings["raw_input"].HasField("sprite")
    assert _read_tsv(tmp_path / "raw_input" / "tensors.tsv").shape == (6, 10)


def test_board_callback_validation(tmp_path):
    x = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="projector_y"):
        BoardCallback(str(tmp_path), x, np.arange(4))
    with pytest.raises(ValueError, match="no name"):
        BoardCallback(str(tmp_path), x, np.array([0, 1, 5]), class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match="projector_every"):
        BoardCallback(str(tmp_path), x, np.arange(3), projector_every=-1)
    with pytest.raises(ValueError, match="projector_x"):
        BoardCallback(str(tmp_path), np.zeros((0, 4)), np.arange(0))


# --------------------------------------------------------------------------- write_projector


@pytest.fixture()
def writer(tmp_path):
    from mxboard import SummaryWriter

    w = SummaryWriter(logdir=str(tmp_path), flush_secs=2, verbose=False)
    yield w
    w.close()


def test_write_projector_rewrite_keeps_one_entry(writer, tmp_path):
    images = np.random.default_rng(4).random((5, 1, 6, 6)).astype(np.float32)
    first = np.zeros((5, 2), np.float32)
    second = np.ones((5, 2), np.float32)
    assert write_projector(writer, "emb", first, list(range(5)), images) == "emb"
    assert write_projector(writer, "emb", second, list("abcde"), images) == "emb"
    assert write_projector(writer, "emb", first, list(range(5)), global_step=7) == "emb_000007"
    embeddings, config = _read_config(str(tmp_path))
    assert [e.tensor_name for e in config.embeddings] == ["emb", "emb_000007"]
    assert embeddings["emb"].sprite.image_path == "emb/sprite.png"
    assert not embeddings["emb_000007"].HasField("sprite")
    np.testing.assert_array_equal(_read_tsv(tmp_path / "emb" / "tensors.tsv"), second)
    assert _read_lines(tmp_path / "emb" / "metadata.tsv") == list("abcde")
    assert _sprite(tmp_path / "emb" / "sprite.png").shape == (18, 18, 3)


def test_write_projector_points_at_an_earlier_sprite(writer, tmp_path):
    images = np.random.default_rng(5).random((5, 1, 6, 8)).astype(np.float32)
    emb = np.zeros((5, 2), np.float32)
    write_projector(writer, "raw", emb, None, images)
    assert write_projector(writer, "emb", emb, None, images, 3, sprite_of="raw") == "emb_000003"
    embeddings, _ = _read_config(str(tmp_path))
    assert embeddings["emb_000003"].sprite.image_path == "raw/sprite.png"
    assert list(embeddings["emb_000003"].sprite.single_image_dim) == [8, 6]
    assert not os.path.exists(tmp_path / "emb_000003" / "sprite.png")
    with pytest.raises(ValueError, match="no sprite.png in 'emb_000003'"):
        write_projector(writer, "emb", emb, None, images, sprite_of="emb_000003")
    with pytest.raises(ValueError, match="sprite_of must be a folder name"):
        write_projector(writer, "emb", emb, None, images, sprite_of="../raw")


def test_write_projector_cleans_labels(writer, tmp_path):
    labels = ["a\tb", "line\nbreak", "", "  ", np.int64(7)]
    write_projector(writer, "t", np.zeros((5, 2)), labels)
    assert _read_lines(tmp_path / "t" / "metadata.tsv") == [
        "a b",
        "line break",
        "(empty)",
        "(empty)",
        "7",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tag": 'bad"tag'}, "tag"),
        ({"tag": "../up"}, "tag"),
        ({"tag": ""}, "tag"),
        ({"global_step": -1}, "global_step"),
        ({"global_step": 1.5}, "global_step"),
        ({"embedding": np.zeros((4,))}, r"\(M, D\)"),
        ({"embedding": np.zeros((0, 2))}, r"\(M, D\)"),
        ({"embedding": np.full((4, 2), np.nan)}, "NaN"),
        ({"labels": [0, 1, 2]}, "3 labels for an embedding of 4 rows"),
        ({"labels": np.zeros((4, 1))}, "1-D"),
        ({"images": np.zeros((4, 28, 28))}, r"\(M, C, H, W\)"),
        ({"images": np.zeros((3, 1, 28, 28))}, "3 images for an embedding of 4 rows"),
        ({"images": np.full((4, 1, 2, 2), 2.0)}, r"\[0, 1\]"),
        ({"images": np.zeros((4, 1, 4097, 2))}, "8192"),
    ],
)
def test_write_projector_validation(writer, kwargs, match):
    args = {"tag": "t", "embedding": np.zeros((4, 2)), "labels": [0, 1, 2, 3]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_projector(writer, **args)


# --------------------------------------------------------------------------- real TensorBoard


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


THUMBS, THUMB_LIMIT = 7, 90


@pytest.fixture(scope="module")
def thumbs_run(board_run):
    """A second run beside board_run: 7 colour 120 x 80 pictures whose sprite would be 360
    px wide, written as thumbnails for a 90 px limit (3 tiles a side, 30 px cells)."""
    from mxboard import SummaryWriter

    rng = np.random.default_rng(3)
    x = block_mean(rng.random((THUMBS, 3, 120 * 4, 80 * 4)), 4).astype(np.float32)
    thumbs = sprite_images(x, max_size=THUMB_LIMIT)
    w = SummaryWriter(logdir=os.path.join(board_run.logdir, "thumbs"), verbose=False)
    try:
        w.add_scalar("test/precision_at_1", 0.5, global_step=0)  # TensorBoard finds runs by events
        write_projector(w, "embedding", x.reshape(THUMBS, -1)[:, :6], list(range(THUMBS)), thumbs)
    finally:
        w.close()
    return SimpleNamespace(x=x, thumbs=thumbs)


@pytest.fixture(scope="module")
def tensorboard_url(board_run, thumbs_run, tmp_path_factory):
    """A TensorBoard server on board_run's logdir; killed when the module's tests are done."""
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if not os.path.exists(exe):
        pytest.fail(f"tensorboard not found next to {sys.executable}")
    port = _free_port()
    err_path = tmp_path_factory.mktemp("tensorboard") / "stderr.txt"
    err = open(err_path, "w")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(
        [exe, "--logdir", board_run.logdir, "--host", "127.0.0.1", "--port", str(port)]
        + ["--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=err,
    )

    def stderr_text():
        err.flush()
        with open(err_path) as f:
            return f.read()[-4000:]

    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        runs, last_error = None, None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited with {proc.returncode}:\n{stderr_text()}")
            try:
                runs = json.loads(_get(f"{url}/data/plugin/projector/runs", timeout=5))
                if "run" in runs and "thumbs" in runs:
                    break
            except (urllib.error.URLError, OSError, ValueError) as e:
                last_error = e
            time.sleep(0.5)
        else:
            pytest.fail(
                f"projector did not list run 'run' within 60 s (runs={runs}, "
                f"last error={last_error!r}); tensorboard stderr:\n{stderr_text()}"
            )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.close()


def _plugin_get(url, route, **params):
    return _get(f"{url}/data/plugin/projector/{route}?{urllib.parse.urlencode(params)}")


def test_tensorboard_projector_info(tensorboard_url):
    info = json.loads(_plugin_get(tensorboard_url, "info", run="run"))
    tensors = {e["tensorName"]: e for e in info["embeddings"]}
    assert sorted(tensors) == ["embedding", "raw_input"]
    assert tensors["embedding"]["tensorShape"] == [M, D]
    assert tensors["raw_input"]["tensorShape"] == [M, 28 * 28]
    for name, e in tensors.items():
        assert e["metadataPath"] == f"{name}/metadata.tsv"
        assert e["sprite"]["imagePath"] == "raw_input/sprite.png"
        assert e["sprite"]["singleImageDim"] == [28, 28]


def test_tensorboard_projector_data(tensorboard_url, board_run):
    data = _plugin_get(tensorboard_url, "tensor", run="run", name="embedding")
    assert len(data) == M * D * 4
    np.testing.assert_allclose(
        np.frombuffer(data, dtype=np.float32).reshape(M, D), board_run.emb, rtol=1e-6
    )
    metadata = _plugin_get(tensorboard_url, "metadata", run="run", name="raw_input")
    assert metadata.decode().splitlines() == [CLASS_NAMES[v] for v in board_run.y]
    # the embedding's sprite is raw_input's file, served by TensorBoard for either tensor
    with open(os.path.join(board_run.run_dir, "raw_input", "sprite.png"), "rb") as f:
        written = f.read()
    for name in ("embedding", "raw_input"):
        sprite = _plugin_get(tensorboard_url, "sprite_image", run="run", name=name)
        assert sprite.startswith(b"\x89PNG") and sprite == written


def test_tensorboard_projector_reads_thumbnail_sprite(tensorboard_url, thumbs_run):
    from io import BytesIO

    from PIL import Image

    info = json.loads(_plugin_get(tensorboard_url, "info", run="thumbs"))
    (e,) = info["embeddings"]
    assert e["sprite"]["singleImageDim"] == [30, 30]  # square cells, 3 a side in 90 px
    png = _plugin_get(tensorboard_url, "sprite_image", run="thumbs", name="embedding")
    with Image.open(BytesIO(png)) as im:
        assert im.size == (THUMB_LIMIT, THUMB_LIMIT) and im.mode == "RGB"
        sprite = np.asarray(im).transpose(2, 0, 1)
    # picture 4 is the middle tile; 120 x 80 becomes 30 x 20, centred, colour kept
    np.testing.assert_array_equal(sprite[:, 30:60, 30:60], thumbs_run.thumbs[4])
    assert not sprite[:, 30:60, 30:35].any() and sprite[:, 30:60, 35:55].all()
    colour = sprite[:, 30:60, 35:55].reshape(3, -1).mean(axis=1) / 255
    np.testing.assert_allclose(colour, thumbs_run.x[4].reshape(3, -1).mean(axis=1), atol=0.02)
    assert not sprite[:, 60:, 30:].any()  # tiles past the 7th stay blank
