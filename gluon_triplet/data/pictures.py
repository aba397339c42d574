"""The picture sources, ``folder:DIR``, ``rec:PREFIX`` and ``image:PATH[,PATH...]``, as
a :class:`~gluon_triplet.data.bundle.DataBundle`: decoded once into float32 arrays when
they fit ``--max-memory``, else streamed (decoded batch by batch). Pillow and MXNet are
imported only here, and only when pictures are loaded."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError
from .bundle import DataBundle, make_bundle, stratified_split

__all__ = ["image_files_bundle", "load_folder", "load_image_files", "load_rec", "split_image_paths"]


def load_folder(path: str, name: str, options, logger: logging.Logger) -> DataBundle:
    """``folder:DIR``: class folders, split by their ``train/`` and ``test/`` folders or
    80/20 per class."""
    from . import folder

    scan = folder.scan_folder(path)
    folder.check_classes(scan, scan.root)
    reader = folder.FolderImages(scan.paths, max_pixels=options.max_pixels)
    return _decoded_bundle(
        name, scan.root, reader, scan.labels, scan.test, scan.class_names, options, logger
    )


def load_rec(prefix: str, name: str, options, logger: logging.Logger) -> DataBundle:
    """``rec:PREFIX``: a RecordIO pack, its classes and split from the ``PREFIX.json``
    sidecar."""
    from . import recordio

    reader, labels, meta = recordio.open_rec(prefix)
    source = reader.path
    top = int(labels.max())
    classes = meta.get("classes") or [str(i) for i in range(top + 1)]
    if len(classes) <= top:
        raise DataError(
            f"{source}: record label {top} but the sidecar names only {len(classes)} classes"
        )
    test = None
    splits = meta.get("splits")
    if splits:
        n_train = int(splits.get("train", 0))
        if n_train + int(splits.get("test", 0)) != len(labels):
            raise DataError(
                f"{source}: the sidecar's splits ({splits}) do not add up to its "
                f"{len(labels)} records"
            )
        test = np.arange(len(labels)) >= n_train
    if "channels" in meta and options.channels is None:
        options = dataclasses.replace(options, channels=int(meta["channels"]))
    return _decoded_bundle(
        name, source, reader, labels, test, tuple(str(c) for c in classes), options, logger
    )


def load_image_files(paths: str, name: str, options, logger: logging.Logger) -> DataBundle:
    """``image:PATH[,PATH...]``: see :func:`image_files_bundle`."""
    return image_files_bundle(split_image_paths(paths), name, options)


def image_files_bundle(files: Sequence[str], name: str, options) -> DataBundle:
    """Named picture files as both splits, label 0 (``image:`` for ``embed``, the
    picture queries of ``search``), decoded with ``options`` (an ImageOptions).

    Raises
    ------
    DataError
        A missing or unreadable file, or one above ``options.max_pixels``.
    """
    from . import folder

    files = [os.path.expanduser(os.fspath(p)) for p in files]
    reader = folder.FolderImages(files, max_pixels=options.max_pixels)
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise DataError(f"image file not found: {missing[0]}")
    size, channels = _picture_shape(reader, options, name, logging.getLogger("gluon_triplet"))
    pixels = folder.read_image_files(
        files, size, channels, options.upscale, max_pixels=options.max_pixels
    )
    x = pixels.astype(np.float32)
    x /= 255
    y = np.zeros(len(x), dtype=np.int64)
    where = tuple(os.path.abspath(p) for p in files)
    return DataBundle(name, x, y, x, y, None, f"{len(files)} image file(s)", where, where)


_MAX_COMMAS = 15  # commas in one file name of a list, beyond a single whole path


def split_image_paths(text: str) -> List[str]:
    """The files of ``image:PATH[,PATH...]``: split at commas, except inside the name of
    a file that exists (the longest such name wins), so ``image:a,b.png`` is the one
    file ``a,b.png`` when it exists, else ``a`` and ``b.png``. A whole ``text`` naming a
    file is one path whatever its commas; in a list, a name may hold up to 15."""
    if os.path.isfile(os.path.expanduser(text)):
        return [os.path.expanduser(text)]
    parts = text.split(",")
    files: List[str] = []
    start = 0
    while start < len(parts):
        stop = start + 1
        for end in range(min(len(parts), start + _MAX_COMMAS + 1), start + 1, -1):
            if os.path.isfile(os.path.expanduser(",".join(parts[start:end]))):
                stop = end
                break
        name = ",".join(parts[start:stop])
        if name:
            files.append(os.path.expanduser(name))
        start = stop
    return files


def _picture_shape(
    reader, options, source: str, logger: logging.Logger, train_labels=None
) -> Tuple[Any, int]:
    """``options``' size and channels, those not given chosen from a sample of ``reader``;
    an automatic size is kept within an epoch's pixels when ``options.pk`` and
    ``train_labels`` (the training split's, before the validation split) are given."""
    from . import decoding

    size, channels = options.size, options.channels
    if size is None or channels is None:
        auto_size, auto_channels = decoding.choose_image_size(reader)
        if auto_size is None:
            raise DataError(f"{source}: none of the sampled images could be read")
        if size is None:
            size = auto_size
            logger.info(
                "image size %dx%d (height x width): the median of %d sampled images, capped "
                "at %d for speed; choose another with --image-size",
                size[0],
                size[1],
                min(len(reader), decoding.SIZE_SAMPLE),
                decoding.MAX_AUTO_SIZE,
            )
            if options.pk is not None and train_labels is not None and len(train_labels):
                size = _within_epoch_pixels(size, options.pk, train_labels, logger)
        channels = channels or auto_channels
    return size, channels


def _within_epoch_pixels(size, pk, train_labels: np.ndarray, logger: logging.Logger):
    """``size`` lowered (:func:`~gluon_triplet.data.imaging.fit_epoch_pixels`) when an
    epoch of P x K batches over ``train_labels`` would show more than its pixel budget."""
    from .imaging import EPOCH_PIXELS, fit_epoch_pixels
    from .samplers import pk_epoch_batches, resolve_p

    counts = np.unique(train_labels, return_counts=True)[1]
    p = resolve_p(pk[0], len(counts))
    if len(counts) < 2 or p > len(counts):
        return size  # training refuses these sets with its own message
    pictures = pk_epoch_batches(counts, p, pk[1]) * p * pk[1]
    fitted = fit_epoch_pixels(size, pictures, EPOCH_PIXELS)
    if fitted != tuple(size):
        logger.info(
            "image size lowered to %dx%d for speed: an epoch of about %s pictures (P x K "
            "batches) at %dx%d would be %.0f megapixels, over the automatic size's %.0f; "
            "choose another with --image-size",
            fitted[0],
            fitted[1],
            f"{pictures:,}",
            size[0],
            size[1],
            pictures * size[0] * size[1] / 1e6,
            EPOCH_PIXELS / 1e6,
        )
    return fitted


def _decoded_bundle(
    name: str,
    source: str,
    reader,
    labels: np.ndarray,
    test: Optional[np.ndarray],
    class_names: Tuple[str, ...],
    options,
    logger: logging.Logger,
) -> DataBundle:
    """Decode every picture once into float32 arrays and split them."""
    from . import decoding

    if test is None:
        train_labels = labels[stratified_split(labels)[0]]
    else:
        train_labels = labels[~np.asarray(test, dtype=bool)]
    size, channels = _picture_shape(reader, options, source, logger, train_labels)
    dataset = decoding.DecodedImages(
        reader, size, channels, options.upscale, max_pixels=options.max_pixels
    )
    need = len(dataset) * int(np.prod(dataset.sample_shape)) * 4
    if need > options.max_memory * 2**30:
        return _streamed_bundle(
            name, source, dataset, labels, test, class_names, options, logger, need
        )
    logger.info(
        "decoding %d images to %s %s with %s",
        len(dataset),
        "x".join(str(s) for s in size),
        "grey" if channels == 1 else "RGB",
        f"{options.workers if options.workers is not None else decoding.default_workers()} "
        "DataLoader worker(s)",
    )
    pixels, status = decoding.decode_all(dataset, options.workers)
    ok, labels, train_idx, test_idx = _readable(dataset, status, labels, test, options, source)
    parts = []
    for idx in (train_idx, test_idx):
        x = pixels[ok[idx]].astype(np.float32)
        x /= 255
        parts.append((x, labels[idx]))
    del pixels
    bundle = make_bundle(name, source, parts[0], parts[1], class_names)
    return _with_paths(bundle, reader, ok, train_idx, test_idx)


def _with_paths(bundle: DataBundle, reader, kept: np.ndarray, train_idx, test_idx) -> DataBundle:
    """``bundle`` with the file of each sample when ``reader`` reads files; ``kept`` maps
    the readable samples to the reader's positions, ``train_idx``/``test_idx`` index them."""
    files = getattr(reader, "paths", None)  # FolderImages; RecordImages has no files
    if files is None:
        return bundle
    return dataclasses.replace(
        bundle,
        paths_train=tuple(os.path.abspath(files[i]) for i in kept[train_idx]),
        paths_test=tuple(os.path.abspath(files[i]) for i in kept[test_idx]),
    )


def _streamed_bundle(
    name: str,
    source: str,
    dataset,
    labels: np.ndarray,
    test: Optional[np.ndarray],
    class_names: Tuple[str, ...],
    options,
    logger: logging.Logger,
    need: int,
) -> DataBundle:
    """Splits of :class:`~gluon_triplet.data.streaming.LazyImages`: decoded batch by batch."""
    from . import decoding, folder
    from .fastpng import available
    from .streaming import LazyImages

    workers = options.workers if options.workers is not None else decoding.default_workers()
    if options.workers is None:
        # beside training, one CPU is left to the step (decoding.training_workers)
        count = f"{decoding.training_workers()} during training, {workers} for evaluation"
    else:
        count = str(workers)
    logger.info(
        "%d images are %.2f GiB as float32, above --max-memory %g GiB: streaming them, "
        "decoded batch by batch by DataLoader workers (%s); plain PNGs by %s",
        len(dataset),
        need / 2**30,
        options.max_memory,
        count,
        "OpenCV"
        if available()
        else "Pillow (pip install opencv-python-headless: the same pixels for a third of the CPU)",
    )
    status = folder.check_headers(dataset.reader)
    ok, labels, train_idx, test_idx = _readable(dataset, status, labels, test, options, source)
    train, test_split = (
        (LazyImages(dataset.subset(ok[idx]), workers), labels[idx]) for idx in (train_idx, test_idx)
    )
    bundle = make_bundle(name, source, train, test_split, class_names)
    return _with_paths(bundle, dataset.reader, ok, train_idx, test_idx)


def _readable(dataset, status, labels, test, options, source: str):
    """Report the bad pictures (:func:`~gluon_triplet.data.decoding.report_bad`) and split
    the others: ``(positions, their labels, train indices, test indices)`` of the readable
    ones. ``test`` is the folders' own split (True for test pictures), or None for a
    stratified split. Refuses data with fewer than two classes that can form triplets."""
    from .decoding import OK, report_bad
    from .folder import check_two_classes

    report_bad(dataset, status, options.strict, source)
    ok = np.flatnonzero(status == OK)
    labels = labels[ok]
    check_two_classes(labels, source)
    if test is None:
        return (ok, labels, *stratified_split(labels))
    return ok, labels, np.flatnonzero(~test[ok]), np.flatnonzero(test[ok])
