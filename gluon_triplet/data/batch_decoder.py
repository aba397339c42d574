"""Worker processes that decode batches of pictures: :class:`BatchDecoder`, kept from pass
to pass, and :func:`stream_batches`, one pass of it."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional

import numpy as np

from ..errors import DataError
from . import fastpng
from .decoding import OK, DecodedImages, default_workers, worker_signals

__all__ = ["BatchDecoder", "stream_batches", "to_unit_float"]


def _bad_message(dataset, positions, codes):
    names = [dataset.name(int(p)) for p in positions[:3]]
    what = (
        "smaller than the crop"
        if 2 in list(codes)
        else f"above --max-pixels {dataset.max_pixels}"
        if 3 in list(codes)
        else "unreadable or corrupt"
    )
    return f"{len(positions)} image(s) {what} while streaming: {', '.join(names)}"


class _WholeBatches:
    """The dataset a worker reads: item ``positions`` is a whole decoded batch.

    DataLoader asks its dataset for one item at a time; handing it a batch's positions
    as one item lets a worker decode the batch into one ``uint8`` array (no per-picture
    tuples to stack) and send it back as one message.
    """

    def __init__(self, dataset: DecodedImages):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, positions):
        return self.dataset.decode_batch(positions)


class _Batches:
    """A batch sampler (what DataLoader's ``batch_sampler`` takes) whose batches are set
    before each pass: each batch is one item, the array of its positions."""

    def __init__(self):
        self.batches: List[np.ndarray] = []

    def __iter__(self):
        for b in self.batches:
            yield [b]

    def __len__(self):
        return len(self.batches)


def _only(items):
    return items[0]


class BatchDecoder:
    """DataLoader worker processes that decode batches of pictures, kept from pass to pass.

    Each batch is decoded by one worker (:meth:`DecodedImages.decode_batch`) and comes
    back as one ``uint8`` array; ``prefetch`` batches are decoded ahead of the consumer.
    The pool is forked at the first pass and reused by the next ones.

    Parameters
    ----------
    dataset : DecodedImages
    workers : int, optional
        Worker processes (default: the usable CPUs; 0 decodes in this process).
    prefetch : int, optional
        Batches decoded ahead (default: twice the workers).
    """

    def __init__(
        self, dataset: DecodedImages, workers: Optional[int] = None, prefetch: Optional[int] = None
    ):
        self.dataset = dataset
        self.workers = default_workers() if workers is None else workers
        self.prefetch = prefetch if prefetch is not None else max(2 * self.workers, 1)
        self._sampler = _Batches()
        self._loader: Any = None

    @property
    def running(self) -> bool:
        """Whether the workers are started (between the first pass and :meth:`close`)."""
        return self._loader is not None

    def __call__(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield each batch's ``(M, ...) uint8`` pixels, in order.

        Raises
        ------
        DataError
            A picture that cannot be decoded (streamed data cannot skip it: the batch's
            triplets refer to it).
        """
        from mxnet.gluon.data import DataLoader

        batches = [np.asarray(b, dtype=np.int64) for b in batches]
        if self._loader is None:
            # Import OpenCV (if installed) once, here: the forked workers inherit it.
            fastpng.available()
            with worker_signals():
                self._loader = DataLoader(
                    _WholeBatches(self.dataset),
                    batch_sampler=self._sampler,
                    batchify_fn=_only,
                    num_workers=self.workers,
                    prefetch=self.prefetch,
                )
        self._sampler.batches = batches
        for (pixels, status), idx in zip(self._loader, batches):
            bad = np.flatnonzero(status != OK)
            if len(bad):
                raise DataError(_bad_message(self.dataset, idx[bad], status[bad]))
            yield pixels

    def close(self) -> None:
        """Stop the worker processes (they also stop when the decoder is collected)."""
        loader, self._loader = self._loader, None
        pool = getattr(loader, "_worker_pool", None)
        if pool is not None:
            pool.terminate()
            loader._worker_pool = None


def stream_batches(
    dataset: DecodedImages,
    batches: Iterable[np.ndarray],
    workers: Optional[int] = None,
    prefetch: Optional[int] = None,
    as_uint8: bool = False,
) -> Iterator[np.ndarray]:
    """Decode batches of pictures in worker processes, in order (a one-pass BatchDecoder).

    Parameters
    ----------
    dataset : DecodedImages
    batches : sequence of (M,) int arrays
        Positions in ``dataset``, one array per batch (e.g. flattened triplets or a
        P x K batch); repeats are decoded again.
    workers : int, optional
        Worker processes (default: the usable CPUs; 0 decodes in this process).
    prefetch : int, optional
        Batches decoded ahead (default: twice the workers).
    as_uint8 : bool
        Yield what the dataset decodes (``uint8`` pixels for pictures) instead of float32.

    Yields
    ------
    (M, ...) float32 (or uint8)

    Raises
    ------
    DataError
        A picture that cannot be decoded.
    """
    decoder = BatchDecoder(dataset, workers, prefetch)
    try:
        for pixels in decoder(batches):
            yield pixels if as_uint8 else to_unit_float(pixels)
    finally:
        decoder.close()


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """Samples as float32: ``uint8`` pixels in [0, 1], computed exactly as the in-memory
    loaders do (``x.astype(float32) / 255``, so streamed and in-memory samples are
    bit-equal); other dtypes only cast."""
    if pixels.dtype != np.uint8:
        return pixels.astype(np.float32, copy=False)
    out = pixels.astype(np.float32)
    out /= 255
    return out
