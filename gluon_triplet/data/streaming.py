"""Pictures decoded batch by batch, for image sets bigger than memory.

:class:`LazyImages` stands in for the ``(N, ...) float32`` array of a split: it has the
array's ``len``, ``shape`` and ``dtype``, and indexing it (an int, a slice or an index
array) decodes just those pictures. :func:`stream_batches` decodes a whole epoch of
batches, given as index arrays, in ``DataLoader`` worker processes that run ahead of the
training loop. Samplers and triplets hold indices only, so no pixel is touched to sample;
memory is bounded by the batches in flight, not by the dataset.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterator, Optional

import numpy as np

from ..errors import DataError
from .batch_decoder import BatchDecoder, _bad_message, stream_batches, to_unit_float
from .decoding import OK, default_workers, training_workers

__all__ = [
    "BatchDecoder",
    "BatchFeed",
    "LazyImages",
    "concat_lazy",
    "shared_pool",
    "stream_batches",
    "to_unit_float",
]

# Indexing fewer pictures than this decodes them in-process: starting workers costs more.
_IN_PROCESS = 64
# Pictures per worker task when a large read is split between the workers.
_CHUNK = 512


class LazyImages:
    """An array-like ``(N, ...) float32`` view of pictures, decoded in [0, 1] when indexed.

    The same for the samples of an array file read in place
    (:class:`~gluon_triplet.data.mapped.MappedSamples`): whatever ``dataset`` is, it has
    ``sample_shape``, ``decode_batch``, ``subset``, ``concat`` and ``name``.

    A bulk read (``_IN_PROCESS`` pictures or more) decodes in DataLoader worker processes,
    started for that read and stopped after it; within :meth:`one_pool`, the reads share
    one pool (an evaluation pass embeds the split in chunks, each a read).

    Parameters
    ----------
    dataset : DecodedImages or MappedSamples
        The pictures (reader, size, channels, the positions this split serves).
    workers : int, optional
        DataLoader worker processes for bulk reads (default: the usable CPUs).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, dataset: Any, workers: Optional[int] = None):
        self.dataset = dataset
        self.workers = default_workers() if workers is None else workers
        self._sharing = False
        self._decoder: Optional[BatchDecoder] = None

    @contextlib.contextmanager
    def one_pool(self) -> Iterator[LazyImages]:
        """Within this, the bulk reads share one pool of worker processes, started by the
        first and stopped at the end (or by :meth:`release_workers`, after which the next
        read starts another)."""
        outer = self._sharing
        self._sharing = True
        try:
            yield self
        finally:
            self._sharing = outer
            if not outer:
                self.release_workers()

    def release_workers(self) -> None:
        """Stop the shared pool of :meth:`one_pool`, if it runs."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.close()

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
        """The samples at ``indices`` as another LazyImages (nothing is read)."""
        return LazyImages(self.dataset.subset(indices), self.workers)

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
            pixels, status = self.dataset.decode_batch(idx)
            bad = np.flatnonzero(status != OK)
            if len(bad):
                raise DataError(_bad_message(self.dataset, idx[bad], status[bad]))
            return to_unit_float(pixels)
        # Chunks, so that every worker decodes a share of a large read.
        chunks = np.array_split(idx, -(-len(idx) // _CHUNK))
        out = np.empty((len(idx), *self.dataset.sample_shape), np.float32)
        start, scale = 0, False
        if self._sharing:
            if self._decoder is None:
                self._decoder = BatchDecoder(self.dataset, self.workers)
            pieces = self._decoder(chunks)
        else:
            pieces = stream_batches(self.dataset, chunks, self.workers, as_uint8=True)
        for pixels in pieces:
            out[start : start + len(pixels)] = pixels
            start += len(pixels)
            scale = pixels.dtype == np.uint8
        if scale:
            out /= 255  # as to_unit_float: the in-memory loaders' float32 values
        return out


def shared_pool(x: Any) -> ContextManager[Any]:
    """``x.one_pool()`` when ``x`` is :class:`LazyImages`; for an array, nothing to do."""
    return x.one_pool() if isinstance(x, LazyImages) else contextlib.nullcontext(x)


def concat_lazy(first: LazyImages, second: LazyImages) -> LazyImages:
    """Two splits of the same samples as one LazyImages (nothing is read)."""
    return LazyImages(first.dataset.concat(second.dataset), first.workers)


def _resident(arr: np.ndarray, ctx):
    """``arr`` as an NDArray on ``ctx``. On the first CPU a C-contiguous array is shared,
    not copied (``nd.from_numpy(zero_copy=True)``, which makes ``arr`` read-only): the
    training set is the largest array of a run and is never written."""
    from mxnet import nd

    if (
        ctx.device_type == "cpu"
        and ctx.device_id == 0
        and arr.dtype == np.float32
        and arr.flags.c_contiguous
        and arr.size
    ):
        return nd.from_numpy(arr, zero_copy=True)
    return nd.array(arr, ctx=ctx, dtype=np.float32)


class BatchFeed:
    """The training samples a step gathers from: all of them, or one streamed batch.

    In memory, :attr:`data` holds every training sample on each context for the whole
    run and :meth:`epoch` yields the epoch's batches of indices unchanged. Streamed
    (``x`` is :class:`LazyImages`), :meth:`epoch` decodes each batch's pictures in
    DataLoader workers running ahead (a :class:`BatchDecoder`, started for each epoch
    and stopped after its last batch), puts them in :attr:`data` (and their labels in
    :attr:`labels`) and yields the batch re-indexed into them; the step's graph is the
    same either way. A batch of offline triplets ``(B, 3)`` becomes ``3B`` pictures
    (anchors, positives, negatives) with local indices ``[[i, B + i, 2B + i]]``; a P x K
    batch ``(M,)`` becomes ``M`` pictures with indices ``0..M-1``.

    Parameters
    ----------
    x : (N, ...) float32 array or LazyImages
    labels : (N,) int array
        Label codes, for online miners.
    contexts : list of mx.Context
    prepare : callable
        The net's ``prepare_input`` (numpy layout the graph wants), or identity.
    workers : int, optional
        DataLoader workers when streaming (default: :func:`~gluon_triplet.data.decoding.
        training_workers`, the usable CPUs less one: the step's threads need the rest).
    """

    def __init__(self, x, labels, contexts, prepare=None, workers=None):
        from mxnet import nd

        self.contexts = list(contexts)
        self.prepare = prepare or (lambda a: a)
        self.all_labels = np.asarray(labels)
        self.stream = x if isinstance(x, LazyImages) else None
        self.workers = workers
        self.decoder: Optional[BatchDecoder] = None
        self.data = None
        self.labels = [nd.array(self.all_labels, ctx=c, dtype=np.float32) for c in self.contexts]
        if self.stream is None:
            arr = self.prepare(np.asarray(x).astype(np.float32, copy=False))
            self.data = [_resident(arr, c) for c in self.contexts]

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
        if self.decoder is None:
            workers = training_workers() if self.workers is None else self.workers
            self.decoder = BatchDecoder(self.stream.dataset, workers)
        for pixels, row in zip(self.decoder(rows), rows):
            arr = self.prepare(to_unit_float(pixels))
            self.data = self._on_contexts(arr)
            self.labels = self._on_contexts(self.all_labels[row].astype(np.float32))
            yield local
        # Evaluation decodes with workers of its own: an idle pool would add to peak memory.
        self.close()

    def _on_contexts(self, arr: np.ndarray):
        """``arr`` as an NDArray on every context; ``nd.from_numpy`` neither copies nor
        waits for the steps already queued (``nd.array`` would)."""
        from mxnet import nd

        host = nd.from_numpy(np.ascontiguousarray(arr), zero_copy=True)
        return [host if c == host.context else host.as_in_context(c) for c in self.contexts]

    def close(self) -> None:
        """Stop the decoding workers, if any (the next epoch starts new ones)."""
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None
