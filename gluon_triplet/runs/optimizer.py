"""A ``gluon.Trainer``'s optimizer state (momentum, Adam's moments, the update counters)
as NDArrays and a JSON layout, never a pickle, and back: what a checkpoint saves of the
optimizer, and what a collapse guard puts back."""

from __future__ import annotations

import mxnet as mx

from ..errors import CheckpointError

__all__ = ["load_optimizer_state", "optimizer_state"]


def _updaters(gluon_trainer):
    """The Python updaters holding the optimizer state: the kvstore's when it updates
    (``update_on_kvstore``), else one per context."""
    # As gluon.Trainer.load_states does: the kvstore is made at the first step.
    if not gluon_trainer._kv_initialized:
        gluon_trainer._init_kvstore()
    if gluon_trainer._params_to_init:
        gluon_trainer._init_params()
    if gluon_trainer._update_on_kvstore:
        updater = getattr(gluon_trainer._kvstore, "_updater", None)
        if updater is None:
            raise CheckpointError("the optimizer state lives on the parameter servers")
        return [updater]
    return list(gluon_trainer._updaters)


def _flatten(state, prefix, arrays):
    """A JSON layout of one optimizer state; its NDArrays go into ``arrays``."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        key = f"{prefix}/{len(arrays)}"
        arrays[key] = state.copyto(mx.cpu())
        return {"array": key}
    if isinstance(state, (tuple, list)):
        return {type(state).__name__: [_flatten(s, prefix, arrays) for s in state]}
    raise CheckpointError(f"cannot save optimizer state of type {type(state).__name__}")


def _unflatten(layout, arrays, shape, where):
    if layout is None:
        return None
    if "array" in layout:
        if layout["array"] not in arrays:
            raise CheckpointError(f"{where}: optimizer array {layout['array']!r} is missing")
        a = arrays[layout["array"]]
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise CheckpointError(
                f"{where}: optimizer state of shape {tuple(a.shape)} for a parameter of "
                f"shape {tuple(shape)}"
            )
        return a.copy()
    kind = "tuple" if "tuple" in layout else "list"
    items = [_unflatten(s, arrays, shape, where) for s in layout[kind]]
    return tuple(items) if kind == "tuple" else items


def optimizer_state(gluon_trainer):
    """A copy of a ``gluon.Trainer``'s optimizer state: ``(arrays, meta)``, the arrays on
    the CPU, for :func:`load_optimizer_state`."""
    updater = _updaters(gluon_trainer)[0]  # every replica's updater holds the same state
    arrays = {}
    states = [
        [key, _flatten(s, f"s{i}", arrays)] for i, (key, s) in enumerate(updater.states.items())
    ]
    opt = updater.optimizer
    meta = {
        "optimizer": type(opt).__name__,
        "num_update": int(opt.num_update),
        "index_update_counts": [
            [device, [[k, int(v)] for k, v in counts.items()]]
            for device, counts in opt._all_index_update_counts.items()
        ],
        "states": states,
    }
    return arrays, meta


def load_optimizer_state(gluon_trainer, arrays, meta, where="the optimizer state"):
    """Put :func:`optimizer_state`'s output back into ``gluon_trainer``; ``where`` names
    it in a :class:`CheckpointError`."""
    updaters = _updaters(gluon_trainer)
    opt = updaters[0].optimizer
    if meta["optimizer"] != type(opt).__name__:
        raise CheckpointError(
            f"{where}: saved by optimizer {meta['optimizer']}, but the config uses "
            f"{type(opt).__name__}"
        )
    params = gluon_trainer._params
    for updater in updaters:
        states = {}
        for key, layout in meta["states"]:
            shape = params[key].shape if isinstance(key, int) and key < len(params) else None
            states[key] = _unflatten(layout, arrays, shape, where)
        updater.states = states
        # Moved to each weight's context at the next update, as Updater.set_states does.
        updater.states_synced = dict.fromkeys(states, False)
    counts = {device: dict(pairs) for device, pairs in meta["index_update_counts"]}
    template = next(iter(counts.values()), {})
    for ctx in gluon_trainer._contexts:
        # Every replica counts the same updates: a context the run did not have starts
        # from another's counts (Adam's bias correction reads them).
        counts.setdefault(ctx.device_id, dict(template))
    opt._all_index_update_counts = counts
    opt._index_update_count = counts[gluon_trainer._contexts[0].device_id]
    opt.num_update = int(meta["num_update"])
