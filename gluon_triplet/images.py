"""The user's images: class folders, RecordIO files, single files, and 4-D array layouts.

Everything here reads or writes pictures; :mod:`gluon_triplet.data` dispatches to it for
``folder:DIR``, ``rec:PREFIX`` and ``image:PATH[,PATH...]``.

* :func:`scan_folder` lists an ImageFolder tree (``DIR/<class>/*.jpg``, or
  ``DIR/train/<class>`` and ``DIR/test/<class>``); the class names are the folder names.
* :class:`FolderImages` and :class:`RecordImages` read one picture by index, from files
  (Pillow) or from a ``.rec`` (``gluon.data.vision.ImageRecordDataset``).
* :class:`DecodedImages` is a ``gluon.data.Dataset`` of fixed-size ``uint8`` pictures (resize
  so the picture covers the target, then centre crop); :func:`decode_all` runs it through a
  ``DataLoader`` with worker processes.
* :func:`pack_folder` writes a folder as RecordIO (``PREFIX.rec`` + ``PREFIX.idx``, the layout of
  MXNet's ``tools/im2rec.py``) plus the sidecar ``PREFIX.json`` with the class names.
* :func:`to_canonical_layout` turns ``(N, H, W, C)`` or ``(N, C, H, W)`` arrays into the
  package's layout: ``(N, H, W)`` for one channel, ``(N, C, H, W)`` for colour.

Pillow decodes files and records alike (it reads every format of the ImageFolder convention,
including GIF and WebP, and opens a header without decoding the pixels, which makes size and
colour checks cheap). MXNet's ``imdecode`` is not used: each call is an engine operation,
several times Pillow's CPU cost on small pictures (see :func:`_decode`). When OpenCV is
installed, plain 8-bit PNGs are decoded by it instead, to the same pixels for a third of
the CPU (:mod:`gluon_triplet.fastpng`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

# data.py imports this module only inside its loaders, so this is not circular.
from .data import DataError
from .fastpng import available, decode_png

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageOptions",
    "MAX_AUTO_SIZE",
    "REC_MAGIC",
    "DecodedImages",
    "FolderImages",
    "FolderScan",
    "ImageFileError",
    "RecordImages",
    "check_classes",
    "check_headers",
    "choose_image_size",
    "decode_all",
    "fit_picture",
    "default_workers",
    "training_workers",
    "open_rec",
    "pack_folder",
    "parse_image_size",
    "read_image_files",
    "report_bad",
    "scan_folder",
    "to_canonical_layout",
    "apply_layout",
    "array_layout",
    "worker_signals",
]

logger = logging.getLogger("gluon_triplet")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: Largest side the automatic ``--image-size`` picks (the usual backbone input).
MAX_AUTO_SIZE = 224
#: How many pictures :func:`choose_image_size` looks at.
SIZE_SAMPLE = 300
#: First four bytes of every MXNet RecordIO record (``kMagic`` of dmlc-core), little-endian.
REC_MAGIC = 0xCED7230A
SIDECAR_FORMAT = "gluon-triplet-rec"
# Pillow modes holding one grey channel (with or without alpha).
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_FIRST_BAD = 3  # how many bad paths a message names

# Status of one decoded picture.
OK, CORRUPT, TOO_SMALL = 0, 1, 2


class ImageFileError(ValueError):
    """A picture file or record cannot be read or does not fit the requested size."""


def _data_error(message):
    return DataError(message)


# --------------------------------------------------------------------------- sizes


def parse_image_size(text) -> Optional[Tuple[int, int]]:
    """``"64"`` -> ``(64, 64)``, ``"48x64"`` -> ``(48, 64)`` (height x width); None -> None.

    Raises
    ------
    ValueError
        Not ``H`` or ``HxW`` with positive integers.
    """
    if text is None:
        return None
    if isinstance(text, (tuple, list)) and len(text) == 2:
        h, w = (int(v) for v in text)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
        if not m:
            raise ValueError(f"image size must be H or HxW (e.g. 64 or 48x64), got {text!r}")
        h = int(m.group(1))
        w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {text!r}")
    return h, w


def fit_picture(img, size: Tuple[int, int], upscale: bool = True):
    """Resize a Pillow image so it covers ``size`` (height, width), then centre-crop it.

    Aspect ratio is kept: the scale is the larger of ``H / h`` and ``W / w``.

    Raises
    ------
    ImageFileError
        The picture is smaller than ``size`` and ``upscale`` is False.
    """
    from PIL import Image

    th, tw = size
    w, h = img.size
    if (w, h) == (tw, th):
        return img
    scale = max(th / h, tw / w)
    if scale > 1 and not upscale:
        raise ImageFileError(f"{w}x{h} pixels is smaller than the {tw}x{th} crop")
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None if scale > 0.5 else 2.0)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return img.crop((left, top, left + tw, top + th))


def _as_mode(img, channels: int):
    """``img`` converted to one grey channel or RGB; alpha is dropped."""
    if channels == 1:
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # 16-bit / float grey: scale to 8 bits instead of clipping
            arr = np.asarray(img, dtype=np.float64)
            hi = 65535.0 if img.mode.startswith("I") and arr.max() > 255 else 255.0
            from PIL import Image

            return Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8), "L")
        return img if img.mode == "L" else img.convert("L")
    return img if img.mode == "RGB" else img.convert("RGB")


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class FolderScan:
    """The pictures of an ImageFolder tree.

    Attributes
    ----------
    paths : list of str
        Every picture file, train then test, sorted within a class.
    labels : (N,) int64
        Index into ``class_names``.
    class_names : tuple of str
        Sorted names of the class folders that hold pictures.
    test : (N,) bool or None
        With ``DIR/train`` and ``DIR/test``: which files are the test split; else None.
    empty : tuple of str
        Class folders holding no picture file (as ``split/class`` with a split layout).
    """

    root: str
    paths: List[str]
    labels: np.ndarray
    class_names: Tuple[str, ...]
    test: Optional[np.ndarray]
    empty: Tuple[str, ...]


def _visible_dirs(path):
    return sorted(
        e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith((".", "__"))
    )


def _class_files(directory):
    found = []
    for here, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            os.path.join(here, f)
            for f in sorted(files)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


def scan_folder(root) -> FolderScan:
    """List the picture files of ``root`` by class (``root/<class>/**/*.jpg`` etc.).

    With sub-folders ``train`` and ``test`` (and nothing else), each is a split with its
    own class folders; the classes are the union of both. Hidden files and folders are
    skipped; files of other extensions are ignored.

    Raises
    ------
    DataError
        ``root`` missing or not a directory, or no class folder in it.
    """
    root = os.path.expanduser(os.fspath(root))
    if not os.path.exists(root):
        raise _data_error(f"image folder not found: {root}")
    if not os.path.isdir(root):
        raise _data_error(f"{root}: not a directory (folder: wants DIR/<class>/<image files>)")
    top = _visible_dirs(root)
    split = set(top) == {"train", "test"}
    parts = ("train", "test") if split else ("",)
    per_part = {p: _visible_dirs(os.path.join(root, p)) for p in parts}
    class_names = tuple(sorted(set().union(*per_part.values())))
    if not class_names:
        raise _data_error(
            f"{root}: no class folders; expected {root}/<class>/<images> with one folder per "
            "class (or train/<class> and test/<class>)"
        )
    files = {}
    empty: List[str] = []
    for part in parts:
        for c in per_part[part]:
            files[part, c] = _class_files(os.path.join(root, part, c))
            if not files[part, c]:
                empty.append(f"{part}/{c}" if part else c)
    # Empty folders are named (see check_classes) but get no label: labels stay dense.
    class_names = tuple(c for c in class_names if any(files.get((p, c)) for p in parts))
    code = {c: i for i, c in enumerate(class_names)}
    paths: List[str] = []
    labels: List[int] = []
    test: List[bool] = []
    for (part, c), found in files.items():
        if not found:
            continue
        paths.extend(found)
        labels.extend([code[c]] * len(found))
        test.extend([part == "test"] * len(found))
    return FolderScan(
        root,
        paths,
        np.asarray(labels, dtype=np.int64),
        class_names,
        np.asarray(test, dtype=bool) if split else None,
        tuple(empty),
    )


def _decode(buf: bytes, channels: int):
    """Encoded picture bytes as a Pillow image in mode ``L`` (``channels`` 1) or ``RGB``.

    Pillow, not MXNet's ``imdecode``: on small pictures MXNet's decoder costs several
    times more CPU (each call is an engine operation; measured 240 against 55 us for a
    28x28 PNG), and a streamed epoch decodes every training picture. EXIF orientation is
    applied, as OpenCV does. Any failure (truncated or corrupt data, unknown format)
    raises ImageFileError.
    """
    from PIL import Image, ImageOps

    try:
        img = Image.open(io.BytesIO(buf))
        img.load()
        if "exif" in img.info:  # cheap test first: most pictures have none
            img = ImageOps.exif_transpose(img)
        return _as_mode(img, channels)
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
        raise ImageFileError(_reason(e)) from None


class FolderImages:
    """Pictures read from files by index, decoded by Pillow (every ImageFolder format)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self):
        return len(self.paths)

    def name(self, i: int) -> str:
        return self.paths[i]

    def header(self, i: int):
        """``(width, height), grey`` from the file header, without decoding pixels."""
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return img.size, img.mode in _GREY_MODES

    def open(self, i: int):
        """The decoded Pillow image, in its own mode; any failure raises ImageFileError."""
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as img:
                img.load()
                return img
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
            raise ImageFileError(_reason(e)) from None

    def encoded(self, i: int) -> bytes:
        """The file's bytes, as stored; raises ImageFileError."""
        try:
            with open(self.paths[i], "rb") as f:
                return f.read()
        except OSError as e:
            raise ImageFileError(_reason(e)) from None

    def image(self, i: int, channels: int):
        """The picture as a Pillow image in mode ``L`` or ``RGB``; raises ImageFileError."""
        return _decode(self.encoded(i), channels)

    def pixels(self, i: int, channels: int) -> np.ndarray:
        """``(H, W)`` (``channels`` 1) or ``(H, W, 3)`` uint8; raises ImageFileError."""
        return np.asarray(self.image(i, channels), dtype=np.uint8)


class RecordImages:
    """Pictures read from an indexed RecordIO file by position (``ImageRecordDataset``).

    The records are read through ``ImageRecordDataset`` and decoded by Pillow (see
    :func:`_decode`) as grey (``channels`` 1) or RGB. The file handle is reopened in each
    DataLoader worker (MXNet's RecordIO checks the process id).
    """

    def __init__(self, rec_path: str, channels: int = 3):
        from mxnet.gluon.data.vision import ImageRecordDataset

        self.path = rec_path
        self.channels = channels
        self.dataset = ImageRecordDataset(rec_path, flag=0 if channels == 1 else 1)
        record = self.dataset._record
        self._offsets = np.fromiter(
            (record.idx[k] for k in record.keys), dtype=np.int64, count=len(record.keys)
        )
        # pread takes its offset, not the file's position: one descriptor serves the
        # forked DataLoader workers too.
        self._fd = os.open(rec_path, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self):
        return len(self.dataset)

    def name(self, i: int) -> str:
        return f"{self.path}#{self.dataset._record.keys[i]}"

    def raw(self, i: int) -> bytes:
        """Record ``i``'s bytes (IRHeader and payload)."""
        # Read directly: two preads cost a fraction of MXNet's reader (several ctypes
        # calls a record), which matters when every record is read each epoch.
        pos = int(self._offsets[i])
        head = os.pread(self._fd, 8, pos)
        if len(head) == 8:
            magic, length = struct.unpack("<II", head)
            if magic == REC_MAGIC and length >> 29 == 0:  # a record in one part
                data = os.pread(self._fd, length, pos + 8)
                if len(data) == length:
                    return data
        # Records split in parts, and damaged ones: MXNet's reader decides.
        from mxnet.gluon.data import RecordFileDataset

        return RecordFileDataset.__getitem__(self.dataset, i)

    def label(self, i: int) -> float:
        from mxnet import recordio

        header, _ = recordio.unpack(self.raw(i))
        label = header.label
        return float(label if np.ndim(label) == 0 else np.asarray(label).ravel()[0])

    def header(self, i: int):
        img = self.open(i)
        arr = np.asarray(img)
        grey = arr.ndim == 2 or bool((arr == arr[..., :1]).all())
        return img.size, grey

    def open(self, i: int):
        return self.image(i, self.channels)

    def encoded(self, i: int) -> bytes:
        """The record's encoded picture (its payload after the IRHeader); ImageFileError."""
        from mxnet import recordio

        try:
            return recordio.unpack(self.raw(i))[1]
        except Exception as e:  # MXNetError, struct.error from a damaged record
            raise ImageFileError(_reason(e)) from None

    def image(self, i: int, channels: int):
        """The record's picture as a Pillow image in mode ``L`` or ``RGB``; ImageFileError."""
        return _decode(self.encoded(i), channels)

    def pixels(self, i: int, channels: int) -> np.ndarray:
        """``(H, W)`` (``channels`` 1) or ``(H, W, 3)`` uint8; raises ImageFileError."""
        return np.asarray(self.image(i, channels), dtype=np.uint8)


def Image_from(arr: np.ndarray):  # noqa: N802 - reads like PIL's Image.fromarray
    from PIL import Image

    return Image.fromarray(arr)


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    first = text.split(" Stack trace")[0]
    return (first[:80] + "...") if len(first) > 80 else (first or type(e).__name__)


def choose_image_size(reader, sample: int = SIZE_SAMPLE, cap: int = MAX_AUTO_SIZE):
    """Size and channels for a set of pictures, from an evenly spread sample of them.

    Returns
    -------
    size : (int, int)
        Median height and median width of the sample, each capped at ``cap``.
    channels : int
        1 when every sampled picture is grey, else 3.
    """
    n = len(reader)
    picks = np.unique(np.linspace(0, n - 1, num=min(sample, n)).round().astype(np.int64))
    heights, widths, grey = [], [], []
    for i in picks.tolist():
        try:
            (w, h), g = reader.header(i)
        except Exception:  # corrupt files are counted when the pictures are decoded
            continue
        heights.append(h)
        widths.append(w)
        grey.append(g)
    if not heights:
        return None, 3
    size = (min(int(np.median(heights)), cap), min(int(np.median(widths)), cap))
    return size, 1 if all(grey) else 3


# --------------------------------------------------------------------------- decoding


class DecodedImages:
    """A ``gluon.data.Dataset`` of fixed-size pictures: item ``i`` is ``(pixels, status)``.

    ``pixels`` is ``(H, W)`` uint8 (one channel) or ``(C, H, W)`` uint8 (RGB), the layout
    the package uses; ``status`` is ``OK``, ``CORRUPT`` or ``TOO_SMALL`` (then the pixels are
    zeros). It never raises on a bad picture, so one corrupt file cannot stop a DataLoader.

    Parameters
    ----------
    reader : FolderImages or RecordImages
    size : (int, int)
        Height, width.
    channels : {1, 3}
    upscale : bool
        Pictures smaller than ``size`` are enlarged (True) or reported ``TOO_SMALL``.
    indices : (M,) int array, optional
        Positions of ``reader`` this dataset serves (default: all).
    """

    def __init__(self, reader, size, channels, upscale=True, indices=None):
        self.reader = reader
        self.size = tuple(int(s) for s in size)
        self.channels = int(channels)
        self.upscale = upscale
        self.indices = np.arange(len(reader)) if indices is None else np.asarray(indices)

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        return self.size if self.channels == 1 else (self.channels, *self.size)

    def __len__(self):
        return len(self.indices)

    def subset(self, positions) -> DecodedImages:
        """The items at ``positions`` (of this dataset) as another dataset."""
        return DecodedImages(
            self.reader, self.size, self.channels, self.upscale, self.indices[np.asarray(positions)]
        )

    def concat(self, other: DecodedImages) -> DecodedImages:
        """This dataset's items, then ``other``'s (the same pictures, e.g. two splits)."""
        if other.reader is not self.reader:
            raise ValueError("concat: the datasets read different pictures")
        both = np.concatenate([self.indices, other.indices])
        return DecodedImages(self.reader, self.size, self.channels, self.upscale, both)

    def name(self, i: int) -> str:
        """Where item ``i`` comes from (a file, or a record of a .rec), for messages."""
        return self.reader.name(int(self.indices[i]))

    def picture(self, i: int) -> np.ndarray:
        """The pixels of item ``i``; raises ImageFileError on a bad picture.

        A plain 8-bit PNG is decoded by OpenCV when it is installed (the same pixels as
        Pillow's, in a third of the CPU: see :mod:`gluon_triplet.fastpng`); everything
        else, and every resize, by Pillow.
        """
        h, w = self.size
        buf = self.reader.encoded(int(self.indices[i]))
        arr = decode_png(buf, self.channels)
        if arr is not None and arr.shape[:2] == (h, w):
            return arr if self.channels == 1 else arr.transpose(2, 0, 1)
        if arr is None:
            img = _decode(buf, self.channels)
        else:
            from PIL import Image

            img = Image.fromarray(np.ascontiguousarray(arr))
        img = fit_picture(img, self.size, self.upscale)
        # tobytes: a third of np.asarray's cost on small pictures (no array interface)
        arr = np.frombuffer(img.tobytes(), dtype=np.uint8)
        return arr.reshape(h, w) if self.channels == 1 else arr.reshape(h, w, 3).transpose(2, 0, 1)

    def decode_batch(self, items: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Items ``items`` at once: what a DataLoader worker does for one batch.

        Returns
        -------
        pixels : (M, ...) uint8
            ``sample_shape`` per item; zeros for a bad picture.
        status : (M,) int32
            ``OK``, ``CORRUPT`` or ``TOO_SMALL``.
        """
        items = np.asarray(items)
        out = np.zeros((len(items), *self.sample_shape), dtype=np.uint8)
        status = np.zeros(len(items), dtype=np.int32)
        for k, i in enumerate(items.tolist()):
            try:
                out[k] = self.picture(i)
            except ImageFileError as e:
                status[k] = TOO_SMALL if "smaller than" in str(e) else CORRUPT
        return out, status

    def __getitem__(self, i):
        try:
            return self.picture(i), np.int32(OK)
        except ImageFileError as e:
            status = TOO_SMALL if "smaller than" in str(e) else CORRUPT
            return np.zeros(self.sample_shape, np.uint8), np.int32(status)

    def transform_first(self, fn):  # the gluon.data.Dataset API DataLoader users expect
        from mxnet.gluon.data import SimpleDataset

        return SimpleDataset(self).transform_first(fn)


def default_workers() -> int:
    """The usable CPUs (the scheduler's affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def training_workers(cpus: Optional[int] = None) -> int:
    """Decoding workers beside a training epoch: the usable CPUs less one, at least one.

    Training keeps every usable CPU busy with MXNet's OpenMP threads (one per CPU); a
    decoding worker per CPU on top of them takes cores from the step instead of adding
    speed, once one worker decodes faster than the step consumes. One CPU is left to
    training. Evaluation and loading, where nothing else runs, keep
    :func:`default_workers`. See docs/images.md for the measurements behind it.

    Parameters
    ----------
    cpus : int, optional
        Usable CPUs (default: :func:`default_workers`).
    """
    cpus = default_workers() if cpus is None else cpus
    return max(1, cpus - 1)


@contextlib.contextmanager
def worker_signals():
    """Default SIGINT/SIGTERM handlers while DataLoader forks its workers.

    A run turns these signals into an exception in its process; workers that inherited
    that handler would print a traceback each when the pool stops them.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}
    for s in signums:
        signal.signal(s, signal.SIG_DFL)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _batchify(items):
    pixels = np.stack([p for p, _ in items])
    return pixels, np.asarray([s for _, s in items], dtype=np.int32)


def decode_all(dataset: DecodedImages, workers: Optional[int] = None, batch_size: int = 256):
    """Decode every picture of ``dataset``, in worker processes.

    Returns
    -------
    pixels : (M, ...) uint8
        ``dataset.sample_shape`` per picture.
    status : (M,) int32
        ``OK``, ``CORRUPT`` or ``TOO_SMALL``.
    """
    from mxnet.gluon.data import DataLoader

    workers = default_workers() if workers is None else workers
    out = np.empty((len(dataset), *dataset.sample_shape), dtype=np.uint8)
    status = np.empty(len(dataset), dtype=np.int32)
    if len(dataset) == 0:
        return out, status
    # numpy batches (no NDArray conversion): a worker's batch crosses the process boundary
    # once, and the pixels land in the preallocated array.
    available()  # OpenCV imported once, here, not in each forked worker
    with worker_signals():
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers if len(dataset) > batch_size else 0,
            batchify_fn=_batchify,
        )
    start = 0
    for pixels, codes in loader:
        out[start : start + len(codes)] = pixels
        status[start : start + len(codes)] = codes
        start += len(codes)
    return out, status


def check_headers(reader) -> np.ndarray:
    """A cheap check before streaming: every file's header opens (records: no check).

    Returns
    -------
    (N,) int32
        ``OK`` or ``CORRUPT`` per picture. A file with a good header but damaged pixels is
        found only when it is decoded (then streaming stops with a DataError naming it).
    """
    status = np.zeros(len(reader), dtype=np.int32)
    if not isinstance(reader, FolderImages):
        return status
    from PIL import Image

    for i, path in enumerate(reader.paths):
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 - the header is parsed on open; size proves it
        except Exception:  # Pillow raises several types for a bad header
            status[i] = CORRUPT
    return status


def report_bad(dataset: DecodedImages, status: np.ndarray, strict: bool, where: str):
    """Turn bad pictures into the one warning or the one error the user sees.

    Raises
    ------
    DataError
        Pictures smaller than the crop (always), or corrupt ones with ``strict``.
    """
    small = np.flatnonzero(status == TOO_SMALL)
    if len(small):
        names = [dataset.reader.name(int(dataset.indices[i])) for i in small[:_FIRST_BAD]]
        h, w = dataset.size
        raise _data_error(
            f"{where}: {len(small)} image(s) smaller than the {h}x{w} crop with upscaling off "
            f"(first: {', '.join(names)}); choose a smaller --image-size or allow upscaling"
        )
    bad = np.flatnonzero(status == CORRUPT)
    if len(bad):
        names = [dataset.reader.name(int(dataset.indices[i])) for i in bad[:_FIRST_BAD]]
        more = f" and {len(bad) - len(names)} more" if len(bad) > len(names) else ""
        first = ", ".join(names)
        text = f"{len(bad)} unreadable or corrupt image(s) in {where} (first: {first}{more})"
        if strict:
            raise _data_error(text + "; --strict refuses them")
        logger.warning("%s; skipped", text)


# --------------------------------------------------------------------------- array layouts


def to_canonical_layout(x: np.ndarray, where: str = "data") -> np.ndarray:
    """4-D samples in the package's layout: ``(N, H, W)`` for one channel, else ``(N, C, H, W)``.

    Channels-last ``(N, H, W, C)`` (NumPy, Keras, Pillow) and channels-first ``(N, C, H, W)``
    (MXNet) are told apart by which axis has 1, 3 or 4 entries; when both could (e.g.
    ``(N, 3, 3, 3)``) the channels-last reading wins unless only the first is square. Alpha
    (a 4th channel) is dropped. Arrays of other dimensions are returned unchanged.

    Raises
    ------
    DataError
        A 4-D array whose second and last axes both differ from 1, 3 and 4.
    """
    layout = array_layout(x.shape, where)
    if layout is None:
        return x
    return apply_layout(x, layout)


def array_layout(shape: Tuple[int, ...], where: str = "data") -> Optional[Tuple[bool, int]]:
    """``(channels_last, channels)`` of 4-D samples of ``shape`` (logged), None for other
    dimensions; the rule of :func:`to_canonical_layout`, from the shape alone.

    Raises
    ------
    DataError
        A 4-D shape whose second and last axes both differ from 1, 3 and 4.
    """
    if len(shape) != 4:
        return None
    n, a, b, c = shape
    last, first = c in (1, 3, 4), a in (1, 3, 4)
    if last and first:
        last = not (b == c and a != b)  # (N, 3, 32, 32) is channels-first, (N, 32, 32, 3) last
    if not (last or first):
        raise _data_error(
            f"{where}: 4-D samples {tuple(shape)} are neither channels-last (N, H, W, C) nor "
            "channels-first (N, C, H, W) with C in 1, 3, 4"
        )
    channels = c if last else a
    layout = "channels-last (N, H, W, C)" if last else "channels-first (N, C, H, W)"
    hw = (a, b) if last else (b, c)
    seen, out = (channels, *hw), hw if channels == 1 else (min(channels, 3), *hw)
    note = ", alpha dropped" if channels == 4 else ""
    logger.info("%s: %s samples %s read as %s%s", where, layout, seen, out, note)
    return last, channels


def apply_layout(x: np.ndarray, layout: Tuple[bool, int]) -> np.ndarray:
    """4-D samples ``x`` turned into the package's layout (see :func:`array_layout`)."""
    last, channels = layout
    if last:
        x = x.transpose(0, 3, 1, 2)
    if channels == 4:
        x = x[:, :3]
    return np.ascontiguousarray(x[:, 0] if channels == 1 else x)


# --------------------------------------------------------------------------- RecordIO


def _sidecar_path(prefix):
    return prefix + ".json"


def open_rec(prefix: str):
    """Check and open ``PREFIX.rec`` + ``PREFIX.idx`` (+ the optional ``PREFIX.json``).

    Returns
    -------
    reader : RecordImages
    labels : (N,) int64
        From the record headers.
    meta : dict
        The sidecar (``classes``, ``channels``, ``splits``), or {} without one.

    Raises
    ------
    DataError
        Missing ``.rec`` or ``.idx``, a file that is not RecordIO, an unreadable sidecar,
        or an index that does not match the records.
    """
    prefix = os.path.expanduser(prefix)
    if prefix.endswith((".rec", ".idx")):
        prefix = prefix[:-4]
    rec, idx = prefix + ".rec", prefix + ".idx"
    if not os.path.isfile(rec):
        raise _data_error(f"RecordIO file not found: {rec}")
    if not os.path.isfile(idx):
        raise _data_error(
            f"{idx} is missing: reading {rec} by index needs it (gluon-triplet pack or MXNet's "
            "im2rec.py write both)"
        )
    with open(rec, "rb") as f:
        head = f.read(4)
    if len(head) < 4 or struct.unpack("<I", head)[0] != REC_MAGIC:
        raise _data_error(f"{rec}: not a RecordIO file (no RecordIO magic number at its start)")
    meta = {}
    side = _sidecar_path(prefix)
    if os.path.isfile(side):
        try:
            with open(side, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise _data_error(f"{side}: unreadable sidecar ({e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("classes", []), list):
            raise _data_error(f"{side}: sidecar must be a JSON object with a 'classes' list")
    try:
        reader = RecordImages(rec, channels=int(meta.get("channels", 3)))
        labels = np.fromiter(
            (reader.label(i) for i in range(len(reader))), dtype=np.float64, count=len(reader)
        )
    except DataError:
        raise
    except Exception as e:  # MXNetError, struct.error, ValueError from a damaged index
        raise _data_error(f"{rec}: cannot read its records with {idx} ({_reason(e)})") from None
    if len(labels) == 0:
        raise _data_error(f"{rec}: holds no records")
    if not np.isfinite(labels).all() or (labels != np.round(labels)).any() or labels.min() < 0:
        raise _data_error(f"{rec}: record labels must be non-negative integers")
    return reader, labels.astype(np.int64), meta


def _encode(img, encoding: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if encoding == ".png":
        # im2rec's --quality is the PNG compression level (1-9) for PNG
        img.save(buf, format="PNG", compress_level=min(max(int(quality), 0), 9))
    else:
        img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def pack_folder(
    source,
    prefix: str,
    quality: int = 95,
    resize: int = 0,
    encoding: str = ".jpg",
    strict: bool = False,
    progress: bool = True,
) -> dict:
    """Write an image folder as indexed RecordIO: ``PREFIX.rec``, ``PREFIX.idx``, ``PREFIX.json``.

    The layout of MXNet's ``tools/im2rec.py``: one record per picture, header
    ``IRHeader(flag=0, label=<class index>, id=<record number>, id2=0)``, keys ``0..N-1``
    in the index. Records hold the original file bytes when they are JPEG or PNG and no
    ``resize`` is asked, as im2rec does; other pictures are re-encoded. The train split's
    records come first; the sidecar holds the class names, the channel count and the
    split sizes. Files are written under temporary names and renamed at the end, so a
    failure leaves nothing behind.

    Parameters
    ----------
    source : str
        ``DIR`` or ``folder:DIR`` (an ImageFolder tree, see :func:`scan_folder`).
    prefix : str
        Output path without extension; existing outputs are refused.
    quality : int
        JPEG quality (1-100), or PNG compression level (0-9), when re-encoding.
    resize : int
        Resize the shorter side to this many pixels (0: keep the size).
    encoding : {".jpg", ".png"}
    strict : bool
        Corrupt pictures are an error instead of being skipped with a warning.
    progress : bool
        A tqdm progress bar on stderr.

    Returns
    -------
    dict
        The sidecar's content plus ``records`` and ``skipped``.

    Raises
    ------
    DataError
        Bad folder, fewer than two usable classes, existing outputs, or (``strict``)
        corrupt pictures.
    """
    from mxnet import recordio
    from PIL import Image

    source = os.fspath(source)
    if source.startswith("folder:"):
        source = source[len("folder:") :]
    if encoding not in (".jpg", ".png"):
        raise ValueError(f"encoding must be '.jpg' or '.png', got {encoding!r}")
    if encoding == ".jpg" and not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if resize < 0:
        raise ValueError(f"resize must be >= 0, got {resize}")
    prefix = os.path.expanduser(os.fspath(prefix))
    outputs = [prefix + ".rec", prefix + ".idx", _sidecar_path(prefix)]
    existing = [p for p in outputs if os.path.exists(p)]
    if existing:
        raise _data_error(f"{existing[0]} already exists; choose another --out")
    parent = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(parent):
        raise _data_error(f"directory {parent!r} for --out does not exist")
    scan = scan_folder(source)
    check_classes(scan, source)
    order = np.arange(len(scan.paths))
    if scan.test is not None:
        order = np.concatenate([order[~scan.test], order[scan.test]])
    reader = FolderImages(scan.paths)

    tmp = [os.path.join(parent, ".tmp-" + os.path.basename(p)) for p in outputs]
    writer = recordio.MXIndexedRecordIO(tmp[1], tmp[0], "w")
    bad: List[int] = []
    labels_written: List[int] = []
    n_test = 0
    colour = False
    try:
        bar = _progress(len(order), progress, "packing")
        for i in order.tolist():
            bar.update(1)
            try:
                img = reader.open(i)
            except ImageFileError:
                bad.append(i)
                continue
            grey = img.mode in _GREY_MODES
            colour = colour or not grey
            fmt = img.format
            if resize or fmt not in ("JPEG", "PNG") or img.mode not in ("L", "RGB", "RGBA", "P"):
                img = _as_mode(img, 1 if grey else 3)
                if resize:
                    w, h = img.size
                    s = resize / min(w, h)
                    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
                payload = _encode(img, encoding, quality)
            else:
                with open(scan.paths[i], "rb") as f:
                    payload = f.read()
            key = len(labels_written)
            header = recordio.IRHeader(0, float(scan.labels[i]), key, 0)
            writer.write_idx(key, recordio.pack(header, payload))
            labels_written.append(int(scan.labels[i]))
            n_test += bool(scan.test is not None and scan.test[i])
        bar.close()
        writer.close()
        if bad:
            names = [scan.paths[i] for i in bad[:_FIRST_BAD]]
            text = (
                f"{len(bad)} unreadable or corrupt image(s) in {source} (first: {', '.join(names)})"
            )
            if strict:
                raise _data_error(text + "; --strict refuses them")
            logger.warning("%s; skipped", text)
        counts = np.bincount(labels_written, minlength=len(scan.class_names))
        if (counts >= 2).sum() < 2:
            raise _data_error(
                f"{source}: fewer than two classes with at least two readable images; "
                "nothing written"
            )
        meta = {
            "format": SIDECAR_FORMAT,
            "version": 1,
            "classes": list(scan.class_names),
            "channels": 3 if colour else 1,
            "splits": None
            if scan.test is None
            else {"train": len(labels_written) - n_test, "test": n_test},
            "source": os.path.abspath(source),
            "encoding": encoding,
            "quality": quality,
            "resize": resize,
        }
        with open(tmp[2], "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        for t, p in zip(tmp, outputs):
            os.replace(t, p)
    finally:
        writer.close()
        for t in tmp:
            if os.path.exists(t):
                os.unlink(t)
    return dict(meta, records=len(labels_written), skipped=len(bad))


def check_classes(scan: FolderScan, where: str, labels: Optional[np.ndarray] = None):
    """Name empty class folders (warning); refuse fewer than two usable classes (DataError)."""
    if scan.empty:
        logger.warning(
            "%s: %d empty class folder(s) (no image files): %s",
            where,
            len(scan.empty),
            ", ".join(scan.empty[:10]) + (" ..." if len(scan.empty) > 10 else ""),
        )
    labels = scan.labels if labels is None else labels
    counts = np.bincount(labels, minlength=len(scan.class_names))
    usable = int((counts >= 2).sum())
    if usable < 2:
        raise _data_error(
            f"{where}: {usable} class(es) with at least two usable images; triplets need two "
            f"or more (found classes: {', '.join(scan.class_names) or 'none'})"
        )


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, mininterval=0.5)


# --------------------------------------------------------------------------- single files


def read_image_files(
    paths: Sequence[str], size: Tuple[int, int], channels: int, upscale: bool = True
) -> np.ndarray:
    """Named picture files as one array (``image:PATH[,PATH...]`` for ``embed``).

    Returns
    -------
    (N, H, W) or (N, C, H, W) uint8

    Raises
    ------
    DataError
        A missing or unreadable file, or one too small with ``upscale`` off.
    """
    dataset = DecodedImages(FolderImages(paths), size, channels, upscale)
    out = np.empty((len(paths), *dataset.sample_shape), dtype=np.uint8)
    for i, path in enumerate(paths):
        if not os.path.isfile(path):
            raise _data_error(f"image file not found: {path}")
        try:
            out[i] = dataset.picture(i)
        except ImageFileError as e:
            raise _data_error(f"{path}: cannot use this image ({e})") from None
    return out


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ImageOptions:
    """How pictures become arrays (from :class:`~gluon_triplet.config.Config`).

    Attributes
    ----------
    size : (int, int) or None
        Height, width after resize + centre crop; None: chosen from the data
        (:func:`choose_image_size`).
    channels : {1, 3} or None
        None: 1 when every sampled picture is grey, else 3.
    upscale : bool
        Enlarge pictures smaller than ``size`` (else they are an error).
    strict : bool
        Corrupt pictures are an error instead of being skipped with a warning.
    workers : int or None
        DataLoader worker processes that decode (None: the usable CPUs; 0: in-process).
    max_memory : float
        GiB: sets larger than this as float32 are streamed (decoded batch by batch, see
        :mod:`gluon_triplet.streaming`) instead of decoded into memory once.
    """

    size: Optional[Tuple[int, int]] = None
    channels: Optional[int] = None
    upscale: bool = True
    strict: bool = False
    workers: Optional[int] = None
    max_memory: float = 2.0

    @classmethod
    def from_config(cls, config) -> ImageOptions:
        return cls(
            size=parse_image_size(getattr(config, "image_size", None)),
            channels=getattr(config, "image_channels", None),
            upscale=getattr(config, "upscale", True),
            strict=getattr(config, "strict", False),
            workers=getattr(config, "workers", None),
            max_memory=getattr(config, "max_memory", 2.0),
        )
