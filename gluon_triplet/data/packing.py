"""Writing the records of ``pack``: each picture's payload (its file, or resized and
re-encoded) and the indexed RecordIO file; used by
:func:`~gluon_triplet.data.recordio.pack_folder`."""

from __future__ import annotations

import errno
import io
import os
from typing import List

import numpy as np

from ..errors import ImageFileError
from ..progress import slow_progress
from .decoding import FIRST_BAD, GREY_MODES, as_mode, error_reason, skip_or_refuse
from .folder import FolderImages

__all__ = ["JPEG_MAX_SIDE", "write_records"]


def _encode(img, encoding: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if encoding == ".png":
        # im2rec's --quality is the PNG compression level (1-9) for PNG
        img.save(buf, format="PNG", compress_level=min(max(int(quality), 0), 9))
    else:
        img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


#: The largest side a JPEG can have (libjpeg's JPEG_MAX_DIMENSION).
JPEG_MAX_SIDE = 65500


def _payload(img, path: str, options: dict) -> bytes:
    """The bytes a record stores for picture ``img`` of file ``path``: the file itself when
    it is a JPEG or PNG kept at its size, else ``img`` resized and re-encoded.

    Raises
    ------
    ImageFileError
        The resized picture cannot be encoded (e.g. a 1 x 5000 strip whose shorter side
        is resized to 20 becomes 20 x 100000, beyond JPEG's largest side).
    """
    from PIL import Image

    resize, encoding = options["resize"], options["encoding"]
    fmt = img.format
    if not resize and fmt in ("JPEG", "PNG") and img.mode in ("L", "RGB", "RGBA", "P"):
        with open(path, "rb") as f:
            return f.read()
    img = as_mode(img, 1 if img.mode in GREY_MODES else 3)
    w, h = img.size
    if resize:
        s = resize / min(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    if encoding == ".jpg" and max(w, h) > JPEG_MAX_SIDE:
        raise ImageFileError(
            f"{path}: {w} x {h} pixels after resizing, beyond JPEG's largest side of "
            f"{JPEG_MAX_SIDE} (--encoding .png takes it)"
        )
    try:
        if resize:
            img = img.resize((w, h), Image.BILINEAR)
        return _encode(img, encoding, options["quality"])
    except (OSError, ValueError, MemoryError) as e:
        raise ImageFileError(f"{path}: cannot encode it at {w} x {h} ({error_reason(e)})") from None


def write_records(scan, source: str, rec: str, idx: str, options: dict, progress: bool) -> dict:
    """Write every readable picture of ``scan`` as a record (train split first).

    Returns ``labels`` (of the records), ``n_test``, ``colour`` and ``skipped``; warns
    about (``strict``: refuses) unreadable pictures and ones that cannot be resized.
    """
    from mxnet import recordio

    order = np.arange(len(scan.paths))
    if scan.test is not None:
        order = np.concatenate([order[~scan.test], order[scan.test]])
    reader = FolderImages(scan.paths, max_pixels=options["max_pixels"])
    bad: List[int] = []
    unfit: List[str] = []
    labels: List[int] = []
    n_test, colour = 0, False
    writer = recordio.MXIndexedRecordIO(idx, rec, "w")
    try:
        bar = slow_progress(len(order), "packing", enabled=progress)
        for i in order.tolist():
            bar.update(1)
            try:
                img = reader.open(i)
            except ImageFileError:
                bad.append(i)
                continue
            try:
                payload = _payload(img, scan.paths[i], options)
            except ImageFileError as e:
                unfit.append(str(e))
                continue
            colour = colour or img.mode not in GREY_MODES
            header = recordio.IRHeader(0, float(scan.labels[i]), len(labels), 0)
            writer.write_idx(len(labels), recordio.pack(header, payload))
            labels.append(int(scan.labels[i]))
            n_test += bool(scan.test is not None and scan.test[i])
        bar.close()
        end = writer.tell()
    finally:
        writer.close()
    if os.path.getsize(rec) != end:  # MXNet's stream can drop its buffer at close
        raise OSError(errno.ENOSPC, f"{end} bytes written, {os.path.getsize(rec)} on disk")
    _report_skipped(scan, source, bad, unfit, options)
    return {"labels": labels, "n_test": n_test, "colour": colour, "skipped": len(bad) + len(unfit)}


def _report_skipped(scan, source: str, bad: List[int], unfit: List[str], options: dict) -> None:
    strict = options["strict"]
    if bad:
        names = [scan.paths[i] for i in bad[:FIRST_BAD]]
        skip_or_refuse(
            f"{len(bad)} unreadable or corrupt image(s) in {source} (first: {', '.join(names)})",
            strict,
        )
    if unfit:
        skip_or_refuse(
            f"{len(unfit)} picture(s) cannot be resized to {options['resize']} pixels on "
            f"the shorter side (first: {'; '.join(unfit[:FIRST_BAD])})",
            strict,
        )
