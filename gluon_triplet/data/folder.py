"""Class folders: ``DIR/<class>/*.jpg``, or ``DIR/train/<class>`` and ``DIR/test/<class>``;
the class names are the folder names. :func:`scan_folder` lists the tree and
:class:`FolderImages` reads one picture file by index."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, ImageFileError, TooManyPixels
from .decoding import (
    CORRUPT,
    GREY_MODES,
    MAX_PIXELS,
    TOO_LARGE,
    DecodedImages,
    check_pixels,
    decode_picture,
    error_reason,
    picture_size,
)
from .headers import pillow_allows

__all__ = [
    "check_classes",
    "check_headers",
    "check_two_classes",
    "FolderImages",
    "FolderScan",
    "IMAGE_EXTENSIONS",
    "read_image_files",
    "scan_folder",
]

logger = logging.getLogger("gluon_triplet")


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


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


def _class_files(directory: str, root: str, skipped: List[str]) -> List[str]:
    """The picture files under one class folder, following folder links once each.

    A link is followed only to a real folder not listed yet and inside the class
    folder: a loop (``ln -s .. c0/up``) ends, and no picture is labelled by a folder
    that is not its class's. Each link not followed is added to ``skipped`` with why.
    """
    top = os.path.realpath(directory)
    if _inside(os.path.realpath(root), top):  # a class folder linked to the root, or above
        skipped.append(f"{os.path.relpath(directory, root)} (holds the dataset root: {top})")
        return []
    seen = {top}
    found: List[str] = []
    for here, dirs, files in os.walk(directory, followlinks=True):
        keep = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            path = os.path.join(here, d)
            real = os.path.realpath(path)
            why = None
            if not _inside(real, top):
                outside = not _inside(real, os.path.realpath(root))
                why = "leaves the dataset root" if outside else "leaves its class folder"
                why += f": {real}"
            elif real in seen:
                why = "a folder already listed"
            if why is None:
                seen.add(real)
                keep.append(d)
            elif os.path.islink(path):
                skipped.append(f"{os.path.relpath(path, root)} ({why})")
        dirs[:] = keep
        found.extend(
            os.path.join(here, f)
            for f in sorted(files)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _report_links(root: str, skipped: List[str]) -> None:
    if skipped:
        more = f" ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        logger.warning(
            "%s: %d folder link(s) not followed: %s%s",
            root,
            len(skipped),
            ", ".join(skipped[:10]),
            more,
        )


def scan_folder(root) -> FolderScan:
    """List the picture files of ``root`` by class (``root/<class>/**/*.jpg`` etc.).

    With sub-folders ``train`` and ``test`` (and nothing else), each is a split with its
    own class folders; the classes are the union of both. Hidden files and folders are
    skipped; files of other extensions are ignored. Links to folders are followed once
    per real folder, and only inside their class folder (one warning names the others).

    Raises
    ------
    DataError
        ``root`` missing or not a directory, or no class folder in it.
    """
    root = os.path.expanduser(os.fspath(root))
    if not os.path.exists(root):
        raise DataError(f"image folder not found: {root}")
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a directory (folder: wants DIR/<class>/<image files>)")
    top = _visible_dirs(root)
    split = set(top) == {"train", "test"}
    parts = ("train", "test") if split else ("",)
    per_part = {p: _visible_dirs(os.path.join(root, p)) for p in parts}
    class_names = tuple(sorted(set().union(*per_part.values())))
    if not class_names:
        raise DataError(
            f"{root}: no class folders; expected {root}/<class>/<images> with one folder per "
            "class (or train/<class> and test/<class>)"
        )
    files = {}
    empty: List[str] = []
    skipped: List[str] = []
    for part in parts:
        for c in per_part[part]:
            files[part, c] = _class_files(os.path.join(root, part, c), root, skipped)
            if not files[part, c]:
                empty.append(f"{part}/{c}" if part else c)
    _report_links(root, skipped)
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


class FolderImages:
    """Pictures read from files by index, decoded by Pillow (every ImageFolder format).

    A file whose header declares more than ``max_pixels`` pixels raises
    :class:`~gluon_triplet.errors.TooManyPixels` from :meth:`header`, :meth:`open` and
    :meth:`image` before anything is decoded.
    """

    def __init__(self, paths: Sequence[str], *, max_pixels: int = MAX_PIXELS):
        self.paths = list(paths)
        self.max_pixels = int(max_pixels)

    def __len__(self):
        return len(self.paths)

    def name(self, i: int) -> str:
        return self.paths[i]

    def header(self, i: int):
        """``(width, height), grey`` from the file header, without decoding pixels."""
        from PIL import Image

        check_pixels(*picture_size(self.paths[i]), self.max_pixels)
        pillow_allows(self.max_pixels)
        with Image.open(self.paths[i]) as img:
            return img.size, img.mode in GREY_MODES

    def open(self, i: int):
        """The decoded Pillow image, in its own mode; any failure raises ImageFileError."""
        from PIL import Image

        check_pixels(*picture_size(self.paths[i]), self.max_pixels)
        pillow_allows(self.max_pixels)
        try:
            with Image.open(self.paths[i]) as img:
                img.load()
                return img
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
            raise ImageFileError(error_reason(e)) from None

    def encoded(self, i: int) -> bytes:
        """The file's bytes, as stored; raises ImageFileError."""
        try:
            with open(self.paths[i], "rb") as f:
                return f.read()
        except OSError as e:
            raise ImageFileError(error_reason(e)) from None

    def image(self, i: int, channels: int):
        """The picture as a Pillow image in mode ``L`` or ``RGB``; raises ImageFileError."""
        return decode_picture(self.encoded(i), channels, max_pixels=self.max_pixels)


def check_classes(scan: FolderScan, where: str) -> None:
    """Name empty class folders (warning); refuse fewer than two usable classes (DataError)."""
    if scan.empty:
        logger.warning(
            "%s: %d empty class folder(s) (no image files): %s",
            where,
            len(scan.empty),
            ", ".join(scan.empty[:10]) + (" ..." if len(scan.empty) > 10 else ""),
        )
    found = f" (found classes: {', '.join(scan.class_names) or 'none'})"
    check_two_classes(scan.labels, where, found)


def check_two_classes(labels: np.ndarray, where: str, more: str = "") -> None:
    """Refuse labels with fewer than two classes of two samples (no triplet): DataError."""
    usable = int((np.bincount(labels) >= 2).sum())
    if usable < 2:
        raise DataError(
            f"{where}: {usable} class(es) with at least two usable images; triplets need two "
            f"or more{more}"
        )


def check_headers(reader) -> np.ndarray:
    """A cheap check before streaming: every file's header opens (records: no check).

    Returns
    -------
    (N,) int32
        ``OK``, ``CORRUPT`` or ``TOO_LARGE`` (above the reader's ``max_pixels``) per
        picture. A file with a good header but damaged pixels is found only when it is
        decoded (then streaming stops with a DataError naming it).
    """
    status = np.zeros(len(reader), dtype=np.int32)
    if not isinstance(reader, FolderImages):
        return status
    for i in range(len(reader)):
        try:
            reader.header(i)
        except TooManyPixels:
            status[i] = TOO_LARGE
        except Exception:  # Pillow raises several types for a bad header
            status[i] = CORRUPT
    return status


def read_image_files(
    paths: Sequence[str],
    size: Tuple[int, int],
    channels: int,
    upscale: bool = True,
    *,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Named picture files as one array (``image:PATH[,PATH...]`` for ``embed``).

    Returns
    -------
    (N, H, W) or (N, C, H, W) uint8

    Raises
    ------
    DataError
        A missing or unreadable file, one too small with ``upscale`` off, or one above
        ``max_pixels``.
    """
    reader = FolderImages(paths, max_pixels=max_pixels)
    dataset = DecodedImages(reader, size, channels, upscale, max_pixels=max_pixels)
    out = np.empty((len(paths), *dataset.sample_shape), dtype=np.uint8)
    for i, path in enumerate(paths):
        if not os.path.isfile(path):
            raise DataError(f"image file not found: {path}")
        try:
            out[i] = dataset.picture(i)
        except ImageFileError as e:
            raise DataError(f"{path}: cannot use this image ({e})") from None
    return out
