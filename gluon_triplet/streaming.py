"""Pictures decoded batch by batch, for image sets bigger than memory.

:class:`LazyImages` stands in for the ``(N, ...) float32`` array of a split: it has the
array's ``len``, ``shape`` and ``dtype``, and indexing it (an int, a slice or an index
array) decodes just those pictures. :func:`stream_batches` decodes a whole epoch of
batches, given as index arrays, in ``DataLoader`` worker processes that run ahead of the
training loop. Samplers and triplets hold indices only, so no pixel is touched to sample;
memory is bounded by the batches in flight, not by the dataset.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from .data import DataError
from .images import OK, DecodedImages, default_workers, worker_signals

__all__ = ["BatchFeed", "LazyImages", "concat_lazy", "stream_batches"]

# Indexing fewer pictures than this decodes them in-process: starting workers costs more.
_IN_PROCESS = 64


class LazyImages:
    """An array-like ``(N, ...) float32`` view of pictures, decoded in [0, 1] when indexed.

    Parameters
    ----------
    dataset : DecodedImages
        The pictures (reader, size, channels, the positions this split serves).
    workers : int, optional
        DataLoader worker processes for bulk reads (default: the usable CPUs).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, dataset: DecodedImages, workers: Optional[int] = None):
        self.dataset = dataset
        self.workers = default_workers() if workers is None else workers

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def shape(self):
        return (len(self.dataset), *self.dataset.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the split would take decoded as float32 (nothing is held)."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def subset(self, indices) -> LazyImages:
        """The pictures at ``indices`` as another LazyImages (no decoding)."""
        sub = DecodedImages(
            self.dataset.reader,
            self.dataset.size,
            self.dataset.channels,
            self.dataset.upscale,
            self.dataset.indices[np.asarray(indices)],
        )
        return LazyImages(sub, self.workers)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._decode(np.array([int(key)]))[0]
        if isinstance(key, slice):
            return self._decode(np.arange(len(self))[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise IndexError(f"LazyImages takes an int, a slice or a 1-D index array, not {key!r}")
        return self._decode(idx)

    def __array__(self, dtype=None):
        out = self._decode(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        idx = np.where(idx < 0, idx + len(self), idx)
        if len(idx) < _IN_PROCESS or self.workers == 0:
            pixels = np.stack([self._one(int(i)) for i in idx]) if len(idx) else None
            if pixels is None:
                return np.empty((0, *self.dataset.sample_shape), np.float32)
        else:
            pixels = next(iter(stream_batches(self.dataset, [idx], self.workers, as_uint8=True)))
        out = pixels.astype(np.float32)
        out /= 255
        return out

    def _one(self, i: int) -> np.ndarray:
        pixels, status = self.dataset[i]
        if status != OK:
            raise DataError(_bad_message(self.dataset, [i], [status]))
        return pixels


def concat_lazy(first: LazyImages, second: LazyImages) -> LazyImages:
    """Two splits of the same pictures as one LazyImages (nothing is decoded)."""
    a, b = first.dataset, second.dataset
    if a.reader is not b.reader:
        raise ValueError("concat_lazy: the splits read different pictures")
    both = DecodedImages(
        a.reader, a.size, a.channels, a.upscale, np.concatenate([a.indices, b.indices])
    )
    return LazyImages(both, first.workers)


def _bad_message(dataset, positions, codes):
    names = [dataset.reader.name(int(dataset.indices[p])) for p in positions[:3]]
    what = "smaller than the crop" if 2 in list(codes) else "unreadable or corrupt"
    return f"{len(positions)} image(s) {what} while streaming: {', '.join(names)}"


class _Batches:
    """A batch sampler over fixed index arrays (what DataLoader's ``batch_sampler`` takes)."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self.batches = batches

    def __iter__(self):
        for b in self.batches:
            yield np.asarray(b).tolist()

    def __len__(self):
        return len(self.batches)


def _stack(items):
    return np.stack([p for p, _ in items]), np.asarray([s for _, s in items], np.int32)


def stream_batches(
    dataset: DecodedImages,
    batches: Iterable[np.ndarray],
    workers: Optional[int] = None,
    prefetch: Optional[int] = None,
    as_uint8: bool = False,
) -> Iterator[np.ndarray]:
    """Decode batches of pictures in worker processes, in order.

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
        Yield the raw ``uint8`` pixels instead of float32 in [0, 1].

    Yields
    ------
    (M, ...) float32 (or uint8)

    Raises
    ------
    DataError
        A picture that cannot be decoded (streamed data cannot skip it: the batch's
        triplets refer to it).
    """
    from mxnet.gluon.data import DataLoader

    batches = list(batches)
    workers = default_workers() if workers is None else workers
    with worker_signals():
        loader = DataLoader(
            dataset,
            batch_sampler=_Batches(batches),
            batchify_fn=_stack,
            num_workers=workers,
            prefetch=prefetch if prefetch is not None else max(2 * workers, 1),
        )
    for (pixels, status), idx in zip(loader, batches):
        bad = np.flatnonzero(status != OK)
        if len(bad):
            raise DataError(_bad_message(dataset, np.asarray(idx)[bad], status[bad]))
        if as_uint8:
            yield pixels
        else:
            out = pixels.astype(np.float32)
            out /= 255
            yield out


class BatchFeed:
    """The training samples a step gathers from: all of them, or one streamed batch.

    In memory, :attr:`data` holds every training sample on each context for the whole
    run and :meth:`epoch` yields the epoch's batches of indices unchanged. Streamed
    (``x`` is :class:`LazyImages`), :meth:`epoch` decodes each batch's pictures in
    DataLoader workers running ahead, puts them in :attr:`data` (and their labels in
    :attr:`labels`) and yields the batch re-indexed into them; the step's graph is the
    same either way. A batch of offline triplets ``(B, 3)`` becomes ``3B`` pictures
    (anchors, positives, negatives) with local indices ``[[i, B + i, 2B + i]]``; a P x K
    batch ``(M,)`` becomes ``M`` pictures with indices ``0..M-1``. Shapes never change
    between batches, so the hybridized step keeps its memory.

    Parameters
    ----------
    x : (N, ...) float32 array or LazyImages
    labels : (N,) int array
        Label codes, for online miners.
    contexts : list of mx.Context
    prepare : callable
        The net's ``prepare_input`` (numpy layout the graph wants), or identity.
    workers : int, optional
        DataLoader workers when streaming (default: the usable CPUs).
    """

    def __init__(self, x, labels, contexts, prepare=None, workers=None):
        from mxnet import nd

        self.contexts = list(contexts)
        self.prepare = prepare or (lambda a: a)
        self.all_labels = np.asarray(labels)
        self.stream = x if isinstance(x, LazyImages) else None
        self.workers = workers
        self.data = None
        self.labels = [nd.array(self.all_labels, ctx=c, dtype=np.float32) for c in self.contexts]
        if self.stream is None:
            arr = self.prepare(np.asarray(x).astype(np.float32, copy=False))
            self.data = [nd.array(arr, ctx=c, dtype=np.float32) for c in self.contexts]

    @property
    def streaming(self) -> bool:
        return self.stream is not None

    def epoch(self, batches):
        """Yield each batch (an int32 NDArray row) ready for ``split_and_load``.

        Parameters
        ----------
        batches : (num_batches, B, 3) or (num_batches, M) int32 NDArray
        """
        if self.stream is None:
            for b in range(len(batches)):
                yield batches[b]
            return
        from mxnet import nd

        host = batches.asnumpy()
        if host.ndim == 3:  # offline triplets: anchors, then positives, then negatives
            rows = [row.T.reshape(-1) for row in host]
            b = host.shape[1]
            local = np.arange(3 * b, dtype=np.int32).reshape(3, b).T
        else:
            rows = list(host)
            local = np.arange(host.shape[1], dtype=np.int32)
        local = nd.array(local, ctx=batches.context, dtype=np.int32)
        workers = self.workers
        for pixels, row in zip(stream_batches(self.stream.dataset, rows, workers), rows):
            arr = self.prepare(pixels)
            self.data = [nd.array(arr, ctx=c, dtype=np.float32) for c in self.contexts]
            self.labels = [
                nd.array(self.all_labels[row], ctx=c, dtype=np.float32) for c in self.contexts
            ]
            yield local
