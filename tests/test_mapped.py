"""npz members and IDX files above --max-memory, read in place batch by batch."""

import json
import logging

import numpy as np
import pytest

from gluon_triplet.data.datasets import DataError, load_dataset
from gluon_triplet.data.decoding import ImageOptions
from gluon_triplet.data.idx import write_idx
from gluon_triplet.data.mapped import MappedSamples, map_idx, map_npz_member
from gluon_triplet.data.streaming import LazyImages, concat_lazy

STREAM = ImageOptions(max_memory=0, workers=0)
KEEP = ImageOptions(max_memory=100, workers=0)


def _digits(n=40, shape=(6, 5), classes=4, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    else:
        x = rng.normal(size=(n, *shape)).astype(dtype)
    return x, np.arange(n) % classes


def _same(lazy, memory):
    assert isinstance(lazy.x_train, LazyImages) and isinstance(lazy.x_test, LazyImages)
    assert not isinstance(memory.x_train, LazyImages)
    assert lazy.x_train.shape == memory.x_train.shape
    np.testing.assert_array_equal(lazy.y_train, memory.y_train)
    np.testing.assert_array_equal(lazy.y_test, memory.y_test)
    np.testing.assert_array_equal(lazy.x_train[:], memory.x_train)  # bit-equal float32
    np.testing.assert_array_equal(lazy.x_test[np.array([3, 0, 3])], memory.x_test[[3, 0, 3]])


@pytest.mark.parametrize(
    "shape,dtype",
    [((6, 5), np.uint8), ((6, 5, 3), np.uint8), ((4, 6, 5), np.float64), ((7,), np.int16)],
)
def test_stored_npz_streams_and_equals_the_loaded_one(tmp_path, shape, dtype, caplog):
    x, y = _digits(shape=shape, dtype=dtype)
    xt, yt = _digits(n=12, shape=shape, dtype=dtype, seed=1)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        lazy = load_dataset(f"npz:{path}", images=STREAM)
    assert "streaming them, read from the file batch by batch" in caplog.text
    _same(lazy, load_dataset(f"npz:{path}", images=KEEP))


def test_npz_x_y_streams_with_the_same_split(tmp_path):
    x, y = _digits(n=60, shape=(3, 4, 4))  # channels-first colour
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    lazy = load_dataset(f"npz:{path}", images=STREAM)
    memory = load_dataset(f"npz:{path}", images=KEEP)
    _same(lazy, memory)
    both = concat_lazy(lazy.x_train, lazy.x_test)
    np.testing.assert_array_equal(both[:], np.concatenate([memory.x_train, memory.x_test]))


def test_plain_idx_streams(tmp_path):
    x, y = _digits(n=30, shape=(5, 5))
    xt, yt = _digits(n=10, shape=(5, 5), seed=2)
    for name, arr in (
        ("train-images-idx3-ubyte", x),
        ("train-labels-idx1-ubyte", y.astype(np.uint8)),
        ("t10k-images-idx3-ubyte", xt),
        ("t10k-labels-idx1-ubyte.gz", yt.astype(np.uint8)),  # labels may stay gzipped
    ):
        write_idx(tmp_path / name, arr)
    lazy = load_dataset(f"idx:{tmp_path}", images=STREAM)
    _same(lazy, load_dataset(f"idx:{tmp_path}", images=KEEP))
    # the file is mapped, not read: a big-endian int16 IDX too
    write_idx(tmp_path / "wide", x.astype(np.int16) * 100)
    np.testing.assert_array_equal(map_idx(str(tmp_path / "wide"), 0), x.astype(np.int16) * 100)


def test_compressed_arrays_above_max_memory_are_refused_with_what_to_do(tmp_path):
    x, y = _digits(n=40)
    path = tmp_path / "small.npz"
    np.savez_compressed(path, x=x, y=y)
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{path}", images=ImageOptions(max_memory=1e-6))
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{path}: array 'x' of shape (40, 6, 5) needs")
    assert "above --max-memory 1e-06 GiB, and is compressed" in text
    assert "np.savez (not np.savez_compressed)" in text and "raise --max-memory to 0.00" in text
    # under the limit it is read into memory as before
    assert not isinstance(load_dataset(f"npz:{path}", images=KEEP).x_train, LazyImages)

    for name, arr in (
        ("train-images-idx3-ubyte.gz", x),
        ("train-labels-idx1-ubyte", y.astype(np.uint8)),
        ("t10k-images-idx3-ubyte", x),
        ("t10k-labels-idx1-ubyte", y.astype(np.uint8)),
    ):
        write_idx(tmp_path / name, arr)
    with pytest.raises(DataError, match=r"is compressed.*gunzip train-images-idx3-ubyte\.gz"):
        load_dataset(f"idx:{tmp_path}", images=STREAM)


def test_bad_mapped_files(tmp_path):
    x, y = _digits(n=20, dtype=np.float32)
    x[13, 2, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    lazy = load_dataset(f"npz:{path}", images=STREAM)
    lazy.x_train[:13]  # rows before the bad one read fine
    with pytest.raises(DataError, match=r"\(train\): samples contain NaN .* \(sample 13\)"):
        lazy.x_train[10:15]
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(x), y=y)
    with pytest.raises(DataError, match="Fortran order"):
        map_npz_member(str(tmp_path / "f.npz"), "x", 0)
    write_idx(tmp_path / "short", x[:, :, :2].astype(np.uint8))
    with open(tmp_path / "short", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match="should hold 240 bytes of data, the file has 84"):
        map_idx(str(tmp_path / "short"), 0)


def test_mapped_samples_read_through_workers(tmp_path):
    x, y = _digits(n=300, shape=(4, 4, 3))  # channels-last, mapped
    path = tmp_path / "w.npz"
    np.savez(path, x=x, y=y)
    samples = MappedSamples(map_npz_member(str(path), "x", 0), "w")
    assert samples.sample_shape == (3, 4, 4)
    lazy = LazyImages(samples, workers=2)
    want = x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(lazy[:], want)  # 300 rows: read by 2 DataLoader workers


def _train(tmp_path, path, name, *extra):
    from gluon_triplet.cli import main

    logs = tmp_path / "logs"
    flags = ["--dataset", f"npz:{path}", "--epochs", "2", "--embedding-size", "8"]
    flags += ["--logdir", str(logs), "--run-name", name, "--no-plots", "--workers", "1"]
    flags += ["--projector-samples", "0", "-P", "3", "-K", "4", "--model", "mlp", *extra]
    flags += ["--eval-every", "1"]  # every epoch's test figures, to compare
    assert main(flags) == 0
    return json.loads((logs / name / "metrics.json").read_text())


def test_streamed_npz_trains_to_the_same_numbers(tmp_path, capfd):
    x, y = _digits(n=90, shape=(6, 6), classes=3)
    path = tmp_path / "t.npz"
    np.savez(path, x=x, y=y)
    memory = _train(tmp_path, path, "memory")
    assert "streaming them" not in capfd.readouterr().err
    streamed = _train(tmp_path, path, "streamed", "--max-memory", "0")
    assert "streaming them" in capfd.readouterr().err
    for a, b in zip(memory["history"], streamed["history"]):
        assert a["train"] == pytest.approx(b["train"], rel=1e-5)
        assert a["test"]["precision_at_1"] == pytest.approx(b["test"]["precision_at_1"])
