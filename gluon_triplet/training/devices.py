"""Where training runs: MXNet contexts, the ps-lite kvstore of a distributed job, seeds."""

from __future__ import annotations

import atexit
import os
import random

import mxnet as mx
import numpy as np

from ..config import DIST_KVSTORES
from ..runs.report import command

__all__ = ["create_kvstore", "resolve_contexts", "set_seed"]

#: What a ps-lite process reads to find its job; ``gluon-triplet launch`` sets them all.
_DMLC_VARIABLES = (
    "DMLC_ROLE",
    "DMLC_PS_ROOT_URI",
    "DMLC_PS_ROOT_PORT",
    "DMLC_NUM_WORKER",
    "DMLC_NUM_SERVER",
)


def set_seed(seed):
    """Seed every random source a run uses: Python, NumPy and MXNet."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the global RNG
    mx.random.seed(seed)


def create_kvstore(kind):
    """The ps-lite kvstore of a distributed run, or None when training on one machine.

    ``dist_*`` kinds join the job the ``DMLC_*`` environment variables describe and block
    until every worker and server has joined. Other kinds give None: ``gluon.Trainer``
    creates those itself when there are several contexts.

    Parameters
    ----------
    kind : str
        ``config.kvstore``.

    Returns
    -------
    mx.kvstore.KVStore or None

    Raises
    ------
    ValueError
        A ``dist_*`` kind outside a ps-lite job, or a ps-lite worker with a local kind.
    """
    role = os.environ.get("DMLC_ROLE")
    if kind not in DIST_KVSTORES:
        if role == "worker":
            raise ValueError(
                f"this process is a ps-lite worker (DMLC_ROLE=worker) but --kvstore is "
                f"{kind!r}; use one of {', '.join(DIST_KVSTORES)}"
            )
        return None
    missing = [name for name in _DMLC_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"--kvstore {kind} needs a ps-lite job, but these are not set: {', '.join(missing)}; "
            "start one with: "
            + command("launch", "-n", "WORKERS", "-s", "SERVERS", "--", "--kvstore", kind, "...")
        )
    if role != "worker":
        raise ValueError(f"--kvstore {kind}: DMLC_ROLE is {role!r}; training runs as 'worker'")
    kvstore = mx.kv.create(kind)
    # Freeing a dist kvstore runs ps-lite's leaving handshake (rank 0 stops the servers,
    # every worker waits for the others); on an error path that would stop the servers
    # under the other workers or hang. Held until a normal interpreter exit, it runs then.
    atexit.register(_release, kvstore)
    return kvstore


def _release(kvstore):
    """Called at interpreter exit; atexit drops its reference to ``kvstore`` afterwards."""


def resolve_contexts(spec="auto", num_gpus=None):
    """Turn ``auto | cpu | gpu | gpu:0,1 | cpu:0,1`` into a list of MXNet contexts.

    ``auto`` is every GPU MXNet sees, else the CPU.

    Parameters
    ----------
    spec : str
    num_gpus : int, optional
        Override ``mx.context.num_gpus()`` (for tests).

    Returns
    -------
    list of mx.Context
    """
    if num_gpus is None:
        num_gpus = mx.context.num_gpus()
    spec = spec.strip().lower()
    kind, _, ids = spec.partition(":")
    if kind == "auto" and not ids:
        return [mx.gpu(i) for i in range(num_gpus)] if num_gpus else [mx.cpu()]
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"bad --ctx {spec!r}; use auto, cpu, gpu, gpu:0,1 or cpu:0,1")
    try:
        devices = [int(i) for i in ids.split(",")] if ids else None
    except ValueError:
        raise ValueError(f"bad --ctx {spec!r}: device ids must be integers") from None
    if devices is not None and (not devices or len(set(devices)) != len(devices)):
        raise ValueError(f"bad --ctx {spec!r}: device ids must be distinct")
    if kind == "cpu":
        return [mx.cpu(i) for i in devices or [0]]
    if num_gpus == 0:
        raise ValueError(f"--ctx {spec}: no GPU visible to MXNet (mx.context.num_gpus() == 0)")
    devices = devices if devices is not None else list(range(num_gpus))
    missing = [i for i in devices if i >= num_gpus or i < 0]
    if missing:
        raise ValueError(f"--ctx {spec}: GPU {missing[0]} does not exist ({num_gpus} visible)")
    return [mx.gpu(i) for i in devices]
