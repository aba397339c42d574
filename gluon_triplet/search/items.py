"""The pictures of an index's items, for a page to show: thumbnails and the full picture.

An item's picture is its recorded file (``paths.json``, for ``folder:`` and ``image:`` data)
or, for array data (IDX, npz, ``rec:``), its sample read back from the dataset in the
manifest. A recorded file is read only when its real path (symbolic links resolved) lies
inside the dataset the manifest names: the ``folder:`` directory, or the files an
``image:`` spec lists. A path that leaves it (``..``, a link out, an edited ``paths.json``)
is refused without being opened.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ImageFileError

__all__ = ["THUMBNAIL_SIZE", "ItemPictures", "absolute_spec", "dataset_scope"]

logger = logging.getLogger("gluon_triplet")

#: Largest side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 128
_CACHED = 512  # thumbnails kept in memory


def absolute_spec(spec: str) -> str:
    """A dataset spec with its path(s) made absolute (``folder:pics`` ->
    ``folder:/home/me/pics``), so that it names the same data from any directory."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("folder", "image", "rec", "npz", "idx") or not rest:
        return spec
    parts = rest.split(",") if kind == "image" else [rest]
    return kind + ":" + ",".join(os.path.abspath(os.path.expanduser(p)) if p else p for p in parts)


def dataset_scope(info: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """``(directories, files)``: the real paths an index's recorded files may be in.

    From the manifest's ``dataset_path`` (absolute, written by ``gluon-triplet index``), or
    its ``dataset`` (a relative path there is taken from the current directory).
    """
    spec = str(info.get("dataset_path") or info.get("dataset") or "")
    kind, _, rest = spec.partition(":")
    if kind == "folder" and rest:
        return [os.path.realpath(os.path.expanduser(rest))], []
    if kind == "image" and rest:
        return [], [os.path.realpath(os.path.expanduser(p)) for p in rest.split(",") if p]
    return [], []


class ItemPictures:
    """Pictures of an index's items by id.

    Parameters
    ----------
    index : Index
    max_pixels : int
        Recorded files with more pixels are refused before decoding.
    """

    def __init__(self, index: Any, max_pixels: int):
        self.index = index
        self.max_pixels = int(max_pixels)
        self.dirs, self.files = dataset_scope(index.info)
        self._samples: Optional[np.ndarray] = None
        self._lock = threading.Lock()
        self._thumbs: Dict[int, bytes] = {}

    def _row(self, item_id: int) -> int:
        if item_id < 0 or item_id not in self._id_set():
            raise LookupError(f"no item with id {item_id}")
        return int(self.index._rows_of([item_id])[0])

    def _id_set(self):
        if not hasattr(self, "_ids"):
            self._ids = frozenset(self.index.ids.tolist())
        return self._ids

    def inside(self, path: str) -> bool:
        """Whether ``path``'s real location is in the manifest's dataset."""
        real = os.path.realpath(path)
        if real in self.files:
            return True
        return any(os.path.commonpath([real, d]) == d for d in self.dirs)

    def source_file(self, item_id: int) -> Optional[str]:
        """The item's recorded file, checked to be inside the dataset; None for array data.

        Raises
        ------
        LookupError
            No such id.
        PermissionError
            The recorded path leaves the dataset.
        """
        row = self._row(item_id)
        if not self.index.paths or self.index.paths[row] is None:
            return None
        path = self.index.paths[row]
        if not self.inside(path):
            raise PermissionError(f"item {item_id}'s recorded file is outside the dataset")
        return path

    def picture(self, item_id: int) -> Tuple[bytes, str]:
        """``(bytes, media type)``: the item's file as it is, or its sample as a PNG."""
        path = self.source_file(item_id)
        if path is None:
            return _png(self._sample(item_id)), "image/png"
        from PIL import Image

        from ..data.headers import check_pixels, picture_size

        data = _read(path)
        check_pixels(*picture_size(data), self.max_pixels)
        with Image.open(io.BytesIO(data)) as img:
            kind = Image.MIME.get(img.format or "", "application/octet-stream")
        return data, kind

    def thumbnail(self, item_id: int) -> bytes:
        """A PNG of at most :data:`THUMBNAIL_SIZE` pixels a side (array samples at their
        own size, which is usually smaller)."""
        cached = self._thumbs.get(item_id)
        if cached is not None:
            return cached
        path = self.source_file(item_id)
        if path is None:
            out = _png(self._sample(item_id))
        else:
            out = _thumbnail(_read(path), self.max_pixels)
        if len(self._thumbs) >= _CACHED:
            self._thumbs.pop(next(iter(self._thumbs)), None)
        self._thumbs[item_id] = out
        return out

    def _sample(self, item_id: int) -> np.ndarray:
        row = self._row(item_id)
        with self._lock:
            if self._samples is None:
                self._samples = self._load_samples()
        if row >= len(self._samples):
            raise LookupError(f"the dataset no longer has item {item_id}")
        return self._samples[row]

    def _load_samples(self) -> np.ndarray:
        """The indexed split of the manifest's dataset, as uint8 pixels (loaded once)."""
        from ..data.datasets import load_dataset
        from ..data.decoding import ImageOptions

        info = self.index.info
        shape = tuple(info.get("sample_shape") or ())
        if len(shape) not in (2, 3):
            raise LookupError("the index's items are not pictures")
        channels = 1 if len(shape) == 2 else shape[0]
        images = ImageOptions(size=shape[-2:], channels=channels, workers=0)
        spec = info.get("dataset_path") or info["dataset"]
        data = load_dataset(
            spec, info.get("data_dir"), logger=logger, images=images, download=False
        )
        x = np.asarray(data.split(info.get("split", "train"))[0])
        logger.info("thumbnails: read %d samples of %s", len(x), spec)
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LookupError(f"the item's file is unreadable: {e.strerror or e}") from None


def _png(sample: np.ndarray) -> bytes:
    from PIL import Image

    a = np.asarray(sample)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[2] == 3):
        raise LookupError("the index's items are not pictures")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()


def _thumbnail(data: bytes, max_pixels: int) -> bytes:
    from PIL import Image, ImageOps

    from ..data.decoding import error_reason
    from ..data.headers import check_pixels, picture_size, pillow_allows

    check_pixels(*picture_size(data), max_pixels)
    pillow_allows(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # JPEG: decode at 1/2..1/8
            img = ImageOps.exif_transpose(img)
            img = img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return buf.getvalue()
    except Exception as e:  # Pillow raises many types
        raise ImageFileError(
            f"the item's file is not a usable picture: {error_reason(e)}"
        ) from None
