"""MXNet RecordIO: :func:`pack_folder` writes a class folder as ``PREFIX.rec`` +
``PREFIX.idx`` (the layout of MXNet's ``tools/im2rec.py``) plus the sidecar ``PREFIX.json``
with the class names; :func:`open_rec` and :class:`RecordImages` read it back."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from typing import List

import numpy as np

from ..errors import DataError, ImageFileError, LockedError
from ..locks import exclusive_lock
from ..resources import raise_write_error
from .decoding import MAX_PIXELS, decode_picture, error_reason
from .folder import check_classes, check_two_classes, scan_folder
from .packing import write_records

__all__ = [
    "open_rec",
    "pack_folder",
    "REC_MAGIC",
    "RecordImages",
    "SIDECAR_FORMAT",
]


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


def _check_pack_args(encoding: str, quality: int, resize: int) -> None:
    if encoding not in (".jpg", ".png"):
        raise ValueError(f"encoding must be '.jpg' or '.png', got {encoding!r}")
    if encoding == ".jpg" and not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if resize < 0:
        raise ValueError(f"resize must be >= 0, got {resize}")


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
    split sizes.

    The pack holds ``PREFIX.lock`` (``fcntl.flock``, removed at the end): a second pack
    onto the same prefix fails naming the first one's PID and host. Files are written
    under temporary names of their own and renamed at the end, so a failure (a full or
    read-only disk included) leaves nothing behind.

    Parameters
    ----------
    source : str
        ``DIR`` or ``folder:DIR`` (an ImageFolder tree, see :func:`scan_folder`).
    prefix : str
        Output path without extension; existing outputs are refused.
    quality : int
        JPEG quality (1-100), or PNG compression level (0-9), when re-encoding.
    resize : int
        Resize the shorter side to this many pixels (0: keep the size). A picture that
        cannot be encoded at that size (beyond JPEG's 65500 pixels a side) is skipped
        with a warning, like a corrupt one.
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
    LockedError
        Another process packs onto ``prefix``.
    OSError
        A full or read-only disk: one line naming the file and the free space.
    """
    source = os.fspath(source)
    if source.startswith("folder:"):
        source = source[len("folder:") :]
    _check_pack_args(encoding, quality, resize)
    prefix = os.path.expanduser(os.fspath(prefix))
    outputs = _new_outputs(prefix)
    scan = scan_folder(source)
    check_classes(scan, source)
    options = dict(
        quality=quality, resize=resize, encoding=encoding, strict=strict, max_pixels=max_pixels
    )
    with contextlib.ExitStack() as stack:
        _lock_prefix(stack, prefix, outputs)
        _refuse_existing(outputs)  # a pack that held the lock before may have written them
        return _write_pack(scan, source, outputs, options, progress)
    raise AssertionError("unreachable")


def _new_outputs(prefix: str) -> List[str]:
    """The pack's three files, refused when one exists or their directory does not."""
    outputs = [prefix + ".rec", prefix + ".idx", _sidecar_path(prefix)]
    _refuse_existing(outputs)
    parent = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(parent):
        raise DataError(f"directory {parent!r} for --out does not exist")
    return outputs


def _lock_prefix(stack: contextlib.ExitStack, prefix: str, outputs: List[str]) -> None:
    """Hold ``PREFIX.lock`` until ``stack`` closes; a lock that cannot be written is the
    one-line error of the disk (full, read-only) at ``outputs[0]``."""
    lock = prefix + ".lock"
    try:
        stack.enter_context(exclusive_lock(lock, _in_use(prefix), remove=True))
    except LockedError:
        raise
    except OSError as e:
        raise_write_error(outputs[0], e)


def _refuse_existing(outputs: List[str]) -> None:
    existing = [p for p in outputs if os.path.exists(p)]
    if existing:
        raise DataError(f"{existing[0]} already exists; choose another --out")


def _in_use(prefix: str):
    def error(holder: str) -> LockedError:
        return LockedError(
            f"{prefix} is being packed by {holder} (it holds {prefix}.lock); wait for it to "
            "finish, or choose another --out"
        )

    return error


def _write_pack(scan, source: str, outputs: List[str], options: dict, progress: bool) -> dict:
    """Write the records, the index and the sidecar under unique temporary names beside
    ``outputs``, check them, and rename them into place; nothing is left on an error."""
    parent = os.path.dirname(os.path.abspath(outputs[0]))
    tmp: List[str] = []
    writing = outputs[0]
    try:
        for path in outputs:
            writing = path
            fd, name = tempfile.mkstemp(
                prefix=f".tmp-{os.path.basename(path)}-", suffix=".part", dir=parent
            )
            os.close(fd)
            os.chmod(name, 0o644)  # as readable as any other file (mkstemp makes it 0600)
            tmp.append(name)
        writing = outputs[0]
        written = write_records(scan, source, tmp[0], tmp[1], options, progress)
        meta = _pack_meta(scan, source, written, options)
        writing = outputs[2]
        with open(tmp[2], "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        for t, p in zip(tmp, outputs):
            writing = p
            os.replace(t, p)
        return dict(meta, records=len(written["labels"]), skipped=written["skipped"])
    except Exception as e:
        raise_write_error(writing, e)
    finally:
        for t in tmp:
            if os.path.exists(t):
                os.unlink(t)


def _pack_meta(scan, source: str, written: dict, options: dict) -> dict:
    """The sidecar's content; DataError when fewer than two classes have two records."""
    labels = written["labels"]
    check_two_classes(np.asarray(labels, dtype=np.int64), source, "; nothing written")
    n_test = written["n_test"]
    return {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "classes": list(scan.class_names),
        "channels": 3 if written["colour"] else 1,
        "splits": None if scan.test is None else {"train": len(labels) - n_test, "test": n_test},
        "source": os.path.abspath(source),
        "encoding": options["encoding"],
        "quality": options["quality"],
        "resize": options["resize"],
    }
