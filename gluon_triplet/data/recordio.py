"""MXNet RecordIO: :func:`pack_folder` writes a class folder as ``PREFIX.rec`` +
``PREFIX.idx`` (the layout of MXNet's ``tools/im2rec.py``) plus the sidecar ``PREFIX.json``
with the class names; :func:`open_rec` and :class:`RecordImages` read it back."""

from __future__ import annotations

import io
import json
import logging
import os
import struct
from typing import List

import numpy as np

from ..errors import DataError, ImageFileError
from .decoding import (
    FIRST_BAD,
    GREY_MODES,
    MAX_PIXELS,
    as_mode,
    decode_picture,
    error_reason,
    progress_bar,
)
from .folder import FolderImages, check_classes, scan_folder

__all__ = [
    "open_rec",
    "pack_folder",
    "REC_MAGIC",
    "RecordImages",
    "SIDECAR_FORMAT",
]

logger = logging.getLogger("gluon_triplet")


#: First four bytes of every MXNet RecordIO record (``kMagic`` of dmlc-core), little-endian.
REC_MAGIC = 0xCED7230A


SIDECAR_FORMAT = "gluon-triplet-rec"


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
            raise ImageFileError(error_reason(e)) from None

    def image(self, i: int, channels: int):
        """The record's picture as a Pillow image in mode ``L`` or ``RGB``; ImageFileError."""
        return decode_picture(self.encoded(i), channels)

    def pixels(self, i: int, channels: int) -> np.ndarray:
        """``(H, W)`` (``channels`` 1) or ``(H, W, 3)`` uint8; raises ImageFileError."""
        return np.asarray(self.image(i, channels), dtype=np.uint8)


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
        raise DataError(f"RecordIO file not found: {rec}")
    if not os.path.isfile(idx):
        raise DataError(
            f"{idx} is missing: reading {rec} by index needs it (gluon-triplet pack or MXNet's "
            "im2rec.py write both)"
        )
    with open(rec, "rb") as f:
        head = f.read(4)
    if len(head) < 4 or struct.unpack("<I", head)[0] != REC_MAGIC:
        raise DataError(f"{rec}: not a RecordIO file (no RecordIO magic number at its start)")
    meta = {}
    side = _sidecar_path(prefix)
    if os.path.isfile(side):
        try:
            with open(side, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"{side}: unreadable sidecar ({e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("classes", []), list):
            raise DataError(f"{side}: sidecar must be a JSON object with a 'classes' list")
    try:
        reader = RecordImages(rec, channels=int(meta.get("channels", 3)))
        labels = np.fromiter(
            (reader.label(i) for i in range(len(reader))), dtype=np.float64, count=len(reader)
        )
    except DataError:
        raise
    except Exception as e:  # MXNetError, struct.error, ValueError from a damaged index
        raise DataError(f"{rec}: cannot read its records with {idx} ({error_reason(e)})") from None
    if len(labels) == 0:
        raise DataError(f"{rec}: holds no records")
    if not np.isfinite(labels).all() or (labels != np.round(labels)).any() or labels.min() < 0:
        raise DataError(f"{rec}: record labels must be non-negative integers")
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
    max_pixels: int = MAX_PIXELS,
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
    max_pixels : int
        Pictures whose header declares more pixels are skipped like corrupt ones, never
        decoded (:func:`~gluon_triplet.data.decoding.check_pixels`).

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
        raise DataError(f"{existing[0]} already exists; choose another --out")
    parent = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(parent):
        raise DataError(f"directory {parent!r} for --out does not exist")
    scan = scan_folder(source)
    check_classes(scan, source)
    order = np.arange(len(scan.paths))
    if scan.test is not None:
        order = np.concatenate([order[~scan.test], order[scan.test]])
    reader = FolderImages(scan.paths, max_pixels=max_pixels)

    tmp = [os.path.join(parent, ".tmp-" + os.path.basename(p)) for p in outputs]
    writer = recordio.MXIndexedRecordIO(tmp[1], tmp[0], "w")
    bad: List[int] = []
    labels_written: List[int] = []
    n_test = 0
    colour = False
    try:
        bar = progress_bar(len(order), progress, "packing")
        for i in order.tolist():
            bar.update(1)
            try:
                img = reader.open(i)
            except ImageFileError:
                bad.append(i)
                continue
            grey = img.mode in GREY_MODES
            colour = colour or not grey
            fmt = img.format
            if resize or fmt not in ("JPEG", "PNG") or img.mode not in ("L", "RGB", "RGBA", "P"):
                img = as_mode(img, 1 if grey else 3)
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
            names = [scan.paths[i] for i in bad[:FIRST_BAD]]
            text = (
                f"{len(bad)} unreadable or corrupt image(s) in {source} (first: {', '.join(names)})"
            )
            if strict:
                raise DataError(text + "; --strict refuses them")
            logger.warning("%s; skipped", text)
        counts = np.bincount(labels_written, minlength=len(scan.class_names))
        if (counts >= 2).sum() < 2:
            raise DataError(
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
