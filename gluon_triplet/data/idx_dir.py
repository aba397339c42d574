"""The ``idx:DIR`` source: the four MNIST-named IDX files of a directory, read whole or,
above ``--max-memory``, mapped and read batch by batch."""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np

from ..errors import DataError
from .bundle import DataBundle, above_max_memory, checked_samples, make_bundle
from .idx import check_array_size, read_idx, read_idx_header

__all__ = ["IDX_FILES", "find_idx_file", "load_idx_dir", "missing_idx_files"]

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def find_idx_file(directory: str, base: str) -> Optional[str]:
    """``directory/base`` if it exists, else ``directory/base.gz`` if that does, else None."""
    for name in (base, base + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def missing_idx_files(directory: str) -> List[str]:
    """The IDX files :data:`IDX_FILES` missing from ``directory``, as ``name[.gz]``."""
    return [f + "[.gz]" for f in IDX_FILES if not find_idx_file(directory, f)]


def load_idx_dir(
    directory: str,
    name: str,
    class_names: Optional[Tuple[str, ...]] = None,
    max_bytes: Optional[int] = None,
    options=None,
) -> DataBundle:
    """The four IDX files of ``directory`` as a bundle named ``name``; streamed above
    ``options.max_memory``, every array refused above ``max_bytes``."""
    if not os.path.isdir(directory):
        raise DataError(f"IDX directory not found: {directory}")
    missing = missing_idx_files(directory)
    if missing:
        raise DataError(f"missing IDX files in {directory}: {', '.join(missing)}")
    image_files = [str(find_idx_file(directory, f)) for f in IDX_FILES[::2]]
    shapes = [read_idx_header(f)[1] for f in image_files]
    stream = above_max_memory(shapes, options, directory)
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
        labels = read_idx(find_idx_file(directory, lbl_name), max_bytes)
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
        parts.append(checked_samples(images, labels, directory, split, options if stream else None))
        del images, labels  # free the raw uint8 copy before reading the next split
    return make_bundle(name, directory, parts[0], parts[1], class_names)
