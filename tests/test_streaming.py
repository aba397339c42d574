"""Pictures decoded batch by batch: LazyImages, stream_batches, --max-memory."""

import logging
import os

import numpy as np
import pytest

# the digit folders of test_images (real MNIST digits, PNG and JPEG, some RGB, two corrupt)
from test_images import digits, write_digits  # noqa: F401

from gluon_triplet.data.datasets import DataError, load_dataset
from gluon_triplet.data.decoding import ImageOptions
from gluon_triplet.data.streaming import LazyImages, stream_batches


@pytest.fixture
def folder(tmp_path, digits):  # noqa: F811
    return write_digits(tmp_path / "digits", digits, per_class=12)


def test_streamed_bundle_equals_the_decoded_one(folder, caplog):
    opts = ImageOptions(workers=0)
    memory = load_dataset(f"folder:{folder}", images=opts)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=2, max_memory=0))
    assert "streaming them" in caplog.text and "DataLoader workers (2)" in caplog.text
    assert isinstance(lazy.x_train, LazyImages) and isinstance(lazy.x_test, LazyImages)
    assert lazy.x_train.shape == memory.x_train.shape and lazy.class_names == memory.class_names
    # each sample's file, the same in both, and none of the two skipped bad files
    assert lazy.paths_train == memory.paths_train and lazy.paths_test == memory.paths_test
    assert (
        len(memory.paths_train) + len(memory.paths_test)
        == 48
        == len(set(memory.paths_train + memory.paths_test))
    )
    assert not any(p.endswith(("broken.png", "zz-truncated.jpg")) for p in memory.paths_train)
    np.testing.assert_array_equal(lazy.y_train, memory.y_train)
    np.testing.assert_array_equal(lazy.x_test[:], memory.x_test)  # slice: bulk, in workers
    pick = np.array([5, 0, 17, 5])
    np.testing.assert_array_equal(lazy.x_train[pick], memory.x_train[pick])  # few: in-process
    np.testing.assert_array_equal(lazy.x_train[-1], memory.x_train[-1])
    np.testing.assert_array_equal(np.asarray(lazy.x_test), memory.x_test)
    # the bad files were found by a header check and skipped with the one warning
    assert caplog.text.count("unreadable or corrupt") == 1


def test_stream_batches_in_order_with_repeats(folder):
    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0, max_memory=0)).x_train
    everything = lazy[:]
    batches = [np.array([3, 1, 3]), np.array([0]), np.arange(len(lazy))[::-1]]
    for workers in (0, 2):
        got = list(stream_batches(lazy.dataset, batches, workers=workers))
        assert [g.shape[0] for g in got] == [3, 1, len(lazy)]
        for g, b in zip(got, batches):
            np.testing.assert_array_equal(g, everything[b])


def test_a_picture_broken_after_the_check_stops_streaming(folder):
    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0, max_memory=0)).x_train
    victim = lazy.dataset.reader.paths[int(lazy.dataset.indices[2])]
    with open(victim, "r+b") as f:  # keep the header, lose the pixels
        head = f.read(64)
        f.seek(0)
        f.truncate()
        f.write(head)
    with pytest.raises(DataError, match=f"unreadable or corrupt while streaming: {victim}"):
        list(stream_batches(lazy.dataset, [np.array([0, 1, 2])], workers=0))
    with pytest.raises(DataError, match="while streaming"):
        lazy[2]


def test_lazy_images_refuse_other_keys(folder):
    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0, max_memory=0)).x_test
    with pytest.raises(IndexError, match="1-D index array"):
        lazy[np.zeros((2, 2), dtype=int)]
    assert lazy.nbytes == int(np.prod(lazy.shape)) * 4
    sub = lazy.subset([1, 0])
    np.testing.assert_array_equal(sub[:], lazy[np.array([1, 0])])


def test_rec_streams_too(folder, tmp_path):
    from gluon_triplet.data.recordio import pack_folder

    pack_folder(folder, str(tmp_path / "p"), progress=False)
    lazy = load_dataset(f"rec:{tmp_path / 'p'}", images=ImageOptions(workers=2, max_memory=0))
    memory = load_dataset(f"rec:{tmp_path / 'p'}", images=ImageOptions(workers=0))
    np.testing.assert_array_equal(lazy.x_test[:], memory.x_test)
    assert os.path.exists(tmp_path / "p.rec")
    # records are read with pread, byte for byte what MXNet's reader returns
    from mxnet.gluon.data import RecordFileDataset

    reader = lazy.x_test.dataset.reader
    assert len(reader) == 48
    for i in range(len(reader)):
        assert reader.raw(i) == RecordFileDataset.__getitem__(reader.dataset, i)


@pytest.mark.parametrize("offline", [True, False])
def test_batch_feed_gathers_the_same_pixels(folder, offline):
    import mxnet as mx
    from mxnet import nd

    from gluon_triplet.data.streaming import BatchFeed

    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0, max_memory=0))
    x, y = lazy.x_train, lazy.y_train
    ctx = [mx.cpu()]
    rng = np.random.default_rng(0)
    shape = (3, 4, 3) if offline else (3, 8)
    batches = nd.array(rng.integers(0, len(y), size=shape), dtype=np.int32)
    memory = BatchFeed(x[:], y, ctx)
    streamed = BatchFeed(x, y, ctx, workers=2)
    assert streamed.streaming and not memory.streaming
    for want, got in zip(memory.epoch(batches), streamed.epoch(batches)):
        flat_w = want.asnumpy().T.reshape(-1) if offline else want.asnumpy()
        flat_g = got.asnumpy().T.reshape(-1) if offline else got.asnumpy()
        np.testing.assert_array_equal(
            memory.data[0].asnumpy()[flat_w], streamed.data[0].asnumpy()[flat_g]
        )
        np.testing.assert_array_equal(
            memory.labels[0].asnumpy()[flat_w], streamed.labels[0].asnumpy()[flat_g]
        )


def test_batch_feed_stops_its_workers_after_each_epoch(folder):
    """Evaluation's own workers must not run beside an idle training pool (memory)."""
    import mxnet as mx
    from mxnet import nd

    from gluon_triplet.data.streaming import BatchFeed

    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0, max_memory=0))
    x, y = lazy.x_train, lazy.y_train
    batches = nd.array(np.arange(len(y) // 2 * 2).reshape(2, -1), dtype=np.int32)
    feed = BatchFeed(x, y, [mx.cpu()], workers=2)
    for _ in range(2):  # the second epoch starts workers again
        it = feed.epoch(batches)
        next(it)
        pool = feed.decoder._loader._worker_pool._pool
        assert len(pool) == 2 and all(p.is_alive() for p in pool)
        assert len(list(it)) == 1
        assert feed.decoder is None
        for p in pool:
            p.join(timeout=10)
        assert not any(p.is_alive() for p in pool)


def test_training_workers_leave_one_cpu_to_the_step(monkeypatch):
    from gluon_triplet.data import decoding

    assert [decoding.training_workers(c) for c in (1, 2, 3, 8)] == [1, 1, 2, 7]
    monkeypatch.setattr(decoding.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert decoding.default_workers() == 4 and decoding.training_workers() == 3


def test_batch_feed_by_default_starts_the_training_workers(folder, monkeypatch, caplog):
    """Without ``workers`` the epoch's pool has the usable CPUs less one, evaluation's
    reads keep one per CPU, and the log says both."""
    import mxnet as mx
    from mxnet import nd

    from gluon_triplet.data import decoding
    from gluon_triplet.data.streaming import BatchFeed

    monkeypatch.setattr(decoding, "default_workers", lambda: 3)
    with caplog.at_level(logging.INFO, logger="gluon_triplet"):
        lazy = load_dataset(f"folder:{folder}", images=ImageOptions(max_memory=0))
    assert "DataLoader workers (2 during training, 3 for evaluation)" in caplog.text
    assert lazy.x_test.workers == 3
    x, y = lazy.x_train, lazy.y_train
    batches = nd.array(np.arange(len(y) // 2 * 2).reshape(2, -1), dtype=np.int32)
    feed = BatchFeed(x, y, [mx.cpu()])
    it = feed.epoch(batches)
    next(it)
    assert len(feed.decoder._loader._worker_pool._pool) == 2
    assert len(list(it)) == 1


def _train(folder, tmp_path, name, *extra):
    import json

    from gluon_triplet.cli import main

    logs = tmp_path / "logs"
    flags = ["--dataset", f"folder:{folder}", "--epochs", "2", "--embedding-size", "8"]
    flags += ["--logdir", str(logs), "--run-name", name, "--no-plots", "--workers", "2"]
    flags += ["--projector-samples", "0", "--eval-every", "1", *extra]  # every epoch's test
    assert main(flags) == 0
    return json.loads((logs / name / "metrics.json").read_text())


@pytest.mark.parametrize(
    "miner", [["-P", "4", "-K", "4"], ["--miner", "offline", "--batch-size", "16"]]
)
def test_streamed_training_equals_in_memory_training(folder, tmp_path, miner):
    memory = _train(folder, tmp_path, "memory", *miner)
    streamed = _train(folder, tmp_path, "streamed", "--max-memory", "0", *miner)
    for a, b in zip(memory["history"], streamed["history"]):
        assert a["train"] == pytest.approx(b["train"], rel=1e-5)
        for key in ("precision_at_1", "triplet_accuracy", "map_at_r"):
            assert a["test"][key] == pytest.approx(b["test"][key], rel=1e-5)
    if miner[0] == "-P":
        from gluon_triplet.cli import main

        # the run's config streams: embed every picture of both splits, never all decoded
        out = tmp_path / "all.npz"
        run = str(tmp_path / "logs" / "streamed")
        assert main(["embed", run, "--split", "all", "--out", str(out), "-q"]) == 0
        assert np.load(out)["embeddings"].shape == (4 * 12, 8)


def test_batch_decoder_keeps_its_workers_from_pass_to_pass(folder):
    from gluon_triplet.data.streaming import BatchDecoder

    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=0, max_memory=0)).x_train
    everything = (lazy[:] * 255).round().astype(np.uint8)
    decoder = BatchDecoder(lazy.dataset, workers=2)
    try:
        batches = [np.array([4, 2]), np.arange(len(lazy))]
        first = list(decoder(batches))
        pids = sorted(p.pid for p in decoder._loader._worker_pool._pool)
        second = list(decoder(batches[::-1]))
        # the same two worker processes decoded the second pass
        assert sorted(p.pid for p in decoder._loader._worker_pool._pool) == pids
    finally:
        decoder.close()
    assert decoder._loader is None
    for got, b in zip(first + second, batches + batches[::-1]):
        assert got.dtype == np.uint8  # a quarter of float32 through the pipe
        np.testing.assert_array_equal(got, everything[b])


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    from gluon_triplet.data.decoding import DecodedImages
    from gluon_triplet.data.folder import FolderImages

    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:5, :, 0] = 255  # a red band along the top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = str(tmp_path / "turned.jpg")
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    picture = DecodedImages(FolderImages([path]), (30, 20), 3).picture(0)
    assert picture.shape == (3, 30, 20)
    # upright, the band runs down the right-hand side
    assert picture[0, :, -3:].mean() > 200 and picture[0, :, :3].mean() < 50


def test_resume_of_a_streamed_run_ends_like_an_uninterrupted_one(
    folder, tmp_path, monkeypatch, capsys
):
    """A streamed run (DataLoader workers decoding each batch) interrupted mid-epoch and
    continued with --resume ends with the numbers and parameters of an uninterrupted one."""
    import signal

    from helpers import assert_same_run, final_state, interrupt_at

    from gluon_triplet.cli import main

    logs = tmp_path / "logs"
    flags = ["--dataset", f"folder:{folder}", "--epochs", "3", "--embedding-size", "8"]
    flags += ["-P", "4", "-K", "4", "--max-memory", "0", "--workers", "2", "--no-plots"]
    flags += ["--projector-samples", "6", "--logdir", str(logs), "-q"]
    assert main([*flags, "--run-name", "straight"]) == 0
    with monkeypatch.context() as patch:
        interrupt_at(patch, epoch=2, batch=1, signum=signal.SIGINT)
        assert main([*flags, "--run-name", "resumed"]) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT in epoch 2 of 3; the checkpoint of epoch 1" in err, err
    run = str(logs / "resumed")
    assert main(["--resume", run]) == 0, capsys.readouterr().err
    assert "decoded batch by batch by DataLoader workers (2)" in capsys.readouterr().err
    straight = final_state(str(logs / "straight"))
    assert straight[0]["history"][-1]["test"]  # evaluated, streamed
    assert_same_run(final_state(run), straight)


def test_lazy_images_share_one_pool_within_one_pool(digits, tmp_path):  # noqa: F811
    folder = write_digits(tmp_path / "digits", digits, per_class=25)  # 80 training pictures
    lazy = load_dataset(f"folder:{folder}", images=ImageOptions(workers=2, max_memory=0)).x_train
    assert len(lazy) >= 70  # reads of 64 or more decode in workers
    expected = lazy[:]  # a pool of its own, stopped after the read
    assert lazy._decoder is None
    with lazy.one_pool():
        np.testing.assert_array_equal(lazy[:20], expected[:20])  # few: in-process
        assert lazy._decoder is None
        np.testing.assert_array_equal(lazy[: len(lazy) - 1], expected[:-1])
        pool = lazy._decoder._loader._worker_pool._pool
        pids = sorted(p.pid for p in pool)
        np.testing.assert_array_equal(lazy[::-1], expected[::-1])
        assert sorted(p.pid for p in lazy._decoder._loader._worker_pool._pool) == pids
        lazy.release_workers()  # stopped; the next read starts another pool
        np.testing.assert_array_equal(np.asarray(lazy), expected)
        assert sorted(p.pid for p in lazy._decoder._loader._worker_pool._pool) != pids
        pool = lazy._decoder._loader._worker_pool._pool
    assert lazy._decoder is None
    for p in pool:
        p.join(timeout=10)
    assert not any(p.is_alive() for p in pool)


def test_a_streamed_run_starts_one_evaluation_pool_per_evaluation(digits, tmp_path, monkeypatch):  # noqa: F811
    """Evaluation embeds the test split in --eval-batch-size chunks: they share one pool of
    workers, stopped before each training epoch starts its own."""
    from gluon_triplet.data import streaming

    root = tmp_path / "split"
    write_digits(root / "train", digits, per_class=12, colour=False, corrupt=False)
    write_digits(root / "test", digits, per_class=40, colour=False, corrupt=False)
    events = []  # ("start" | "stop", pictures of the split)

    call, close = streaming.BatchDecoder.__call__, streaming.BatchDecoder.close

    def recorded_call(self, batches):  # runs at the pass's first batch, as the pool starts
        if not self.running:
            events.append(("start", len(self.dataset)))
        yield from call(self, batches)

    def recorded_close(self):
        if self.running:
            events.append(("stop", len(self.dataset)))
        close(self)

    monkeypatch.setattr(streaming.BatchDecoder, "__call__", recorded_call)
    monkeypatch.setattr(streaming.BatchDecoder, "close", recorded_close)
    # 160 test pictures: chunks of 64, 64 and 32 (that one in-process), and the norm sample
    _train(str(root), tmp_path, "run", "--max-memory", "0", "--eval-batch-size", "64")
    test = [e for e in events if e[1] == 160]
    # epoch 0 (with the raw-pixel baseline), epochs 1 and 2 (with the final embedding)
    assert test == [("start", 160), ("stop", 160)] * 3
    # no evaluation pool runs beside a training epoch's
    open_test = 0
    for kind, n in events:
        if n == 160:
            open_test += 1 if kind == "start" else -1
        elif kind == "start":
            assert open_test == 0
    # 48 training pictures less the validation split's 8 (2 of each class, decoded in-process):
    # the batches timed before training, then epochs 1 and 2
    assert [e for e in events if e[1] == 40] == [("start", 40), ("stop", 40)] * 3
    # `evaluate` embeds the streamed test split in the same chunks, in one pool too
    from gluon_triplet.cli import main

    events.clear()
    assert main(["evaluate", str(tmp_path / "logs" / "run"), "-q"]) == 0
    assert [e for e in events if e[1] == 160] == [("start", 160), ("stop", 160)]
