"""Batched inference: a net's embedding of many samples, in bounded memory."""

from __future__ import annotations

import numpy as np
from mxnet import nd

from ..progress import slow_progress

__all__ = ["embed"]


_EMBED_BATCH_BYTES = 32 << 20


def embed(net, x, batch_size=4096, ctx=None, desc=None):
    """Embed samples in batches.

    Parameters
    ----------
    net : gluon.Block
    x : (N, ...) numpy array or NDArray
    batch_size : int
    ctx : mx.Context, optional
        Where to run (default: the context of the net's first parameter).
    desc : str, optional
        Show a progress bar with this label when embedding takes more than a few seconds
        (see :func:`gluon_triplet.progress.slow_progress`).

    Returns
    -------
    (N, D) float32 numpy array
    """
    if ctx is None:
        ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    n = len(x)
    if n == 0:
        raise ValueError("embed: x is empty")
    # Large pictures: cap a batch's input at 32 MiB of float32, which bounds the
    # convolutions' activations too (28x28 samples keep batches of up to ~10,000).
    sample = int(np.prod(x.shape[1:])) * 4
    batch_size = max(1, min(batch_size, _EMBED_BATCH_BYTES // max(sample, 1)))
    out = []
    bar = slow_progress(n, desc or "", unit="sample", enabled=None if desc else False)
    try:
        for start in range(0, n, batch_size):
            batch = x[start : start + batch_size]
            if not isinstance(batch, nd.NDArray):
                batch = nd.array(np.asarray(batch, dtype=np.float32), ctx=ctx)
            out.append(net(batch.as_in_context(ctx)))
            if len(out) >= 2:
                # At most two batches in flight: their inputs are the memory embed holds.
                out[-2].wait_to_read()
            bar.update(len(batch))
        # The last batch syncs at the end.
        return nd.concat(*out, dim=0).asnumpy()
    finally:
        bar.close()
