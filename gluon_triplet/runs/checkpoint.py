"""Resumable checkpoints: everything the next epoch of a run depends on, in one directory.

A checkpoint of epoch ``e`` holds ``model-e<e>.params`` (the net), ``optimizer-e<e>.params``
(the optimizer state, an MXNet params file, never a pickle), with ``--ema-decay``
``training-e<e>.params`` (the training weights; the model file then holds the averages),
the best epoch's ``model-e<best>.params`` when it is an earlier one, and last
``checkpoint.json``, the manifest (:mod:`~gluon_triplet.runs.manifest`): epochs, the
trainer's ``state_dict``, the optimizer's layout and the SHA-256 of every file.

Every file is written atomically and the manifest last, so a crash at any moment leaves
the previous checkpoint readable; the run's ``model-last.params`` and
``model-best.params`` are written just before the manifest (``before_commit``) and
:func:`restore_outputs` makes them match it on ``--resume``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import mxnet as mx
import numpy as np

from ..errors import CheckpointError
from ..io import atomic_save, atomic_write_text
from ..io import sha256_file as _sha256
from ..resources import disk_full_error, error_line, mxnet_reason
from .manifest import FORMAT as _FORMAT
from .manifest import MANIFEST, read_manifest
from .optimizer import load_optimizer_state, optimizer_state

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "read_manifest",
    "restore_outputs",
    "save_checkpoint",
    "save_parameters",
    "supports_resume",
]


def supports_resume(trainer):
    """Whether :func:`save_checkpoint` can save this trainer's optimizer state (not with a
    ``dist_*`` kvstore: the state lives on the parameter servers)."""
    return getattr(trainer, "kvstore", None) is None


def _check_params_file(path):
    """A ``check`` for :func:`~gluon_triplet.io.atomic_save` reading the file back (MXNet
    drops the end of a file on a full disk without an error)."""

    def check(tmp):
        try:
            mx.nd.load(tmp)
        except mx.base.MXNetError as e:
            raise disk_full_error(
                path, f"MXNet wrote an incomplete file ({mxnet_reason(e)})"
            ) from None

    return check


def save_parameters(net, path):
    """``net.save_parameters(path)``, atomically, read back before it replaces ``path``.

    Raises
    ------
    DiskFullError
        The file could not be written whole; ``path`` is left as it was.
    """
    atomic_save(path, net.save_parameters, check=_check_params_file(path))


def save_checkpoint(trainer, directory, best_epoch=None, before_commit=None):
    """Save a checkpoint of ``trainer`` at the end of its current epoch.

    Parameters
    ----------
    trainer : TripletTrainer
    directory : str
        Created if needed. Files of older checkpoints in it are removed once the new
        manifest is in place (except the best epoch's parameters).
    best_epoch : int, optional
        The epoch whose parameters ``model-best.params`` holds: the current one, or an
        earlier one whose checkpoint parameters are still in ``directory``.
    before_commit : callable, optional
        Called with no argument between the checkpoint's files and its manifest (the
        run's model files are written there).

    Returns
    -------
    str
        The manifest's path.

    Raises
    ------
    FloatingPointError
        A parameter is NaN or infinite; nothing is written.
    """
    epoch = int(trainer.epoch)
    bad = _non_finite(trainer.net)
    if bad:
        raise FloatingPointError(
            f"parameter {bad} became NaN or infinite in epoch {epoch}; try a lower --lr"
        )
    os.makedirs(directory, exist_ok=True)
    params_name = _params_name(epoch)
    optimizer_name = f"optimizer-e{epoch:04d}.params"
    arrays, optimizer_meta = optimizer_state(trainer.trainer)
    params_path = os.path.join(directory, params_name)
    optimizer_path = os.path.join(directory, optimizer_name)
    save_parameters(trainer.net, params_path)
    _save_arrays(optimizer_path, arrays)
    sha256 = {params_name: _sha256(params_path), optimizer_name: _sha256(optimizer_path)}
    training_name = _save_training_state(trainer, directory, epoch, sha256)
    best = _best_params(directory, best_epoch, params_name, sha256)
    if before_commit is not None:
        before_commit()
    manifest = {
        "format": _FORMAT,
        "epoch": epoch,
        "params": params_name,
        "optimizer": optimizer_name,
        "training": training_name,
        "best": best,
        "sha256": sha256,
        "optimizer_state": optimizer_meta,
        "trainer": trainer.state_dict(),
    }
    path = os.path.join(directory, MANIFEST)
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
    _remove_older(directory, set(sha256) | {MANIFEST})
    return path


def _save_arrays(path, arrays):
    """``arrays`` (a dict or list of NDArrays) to ``path``, atomically, read back to check."""
    atomic_save(path, lambda tmp: mx.nd.save(tmp, arrays), check=_check_params_file(path))


def _save_training_state(trainer, directory, epoch, sha256):
    """The weight average's training arrays, when the trainer averages: their file name
    (its checksum added to ``sha256``), else None."""
    average = getattr(trainer, "average", None)
    if average is None:
        return None
    training_name = f"training-e{epoch:04d}.params"
    training_path = os.path.join(directory, training_name)
    arrays = {str(i): a.as_in_context(mx.cpu()) for i, a in enumerate(average.training_arrays())}
    _save_arrays(training_path, arrays)
    sha256[training_name] = _sha256(training_path)
    return training_name


def _best_params(directory, best_epoch, params_name, sha256):
    """The manifest's ``best`` record of epoch ``best_epoch`` (its parameters' checksum
    added to ``sha256``), or None when there is none to record."""
    if best_epoch is None:
        return None
    best_name = _params_name(best_epoch)
    best_path = os.path.join(directory, best_name)
    if best_name == params_name or os.path.isfile(best_path):
        sha256.setdefault(best_name, _sha256(best_path))
        return {"epoch": int(best_epoch), "params": best_name}
    return None


def _remove_older(directory, keep):
    """Delete the epoch files of ``directory`` not named in ``keep`` (older checkpoints)."""
    for old in glob.glob(os.path.join(directory, "*-e[0-9]*.params")):
        if os.path.basename(old) not in keep:
            os.unlink(old)


def _params_name(epoch):
    return f"model-e{int(epoch):04d}.params"


def restore_outputs(directory, run_dir, manifest=None):
    """Make a run's ``model-last.params`` and ``model-best.params`` those of its checkpoint
    (a run cut short around the manifest may hold another epoch's); ``--resume`` calls it.

    Parameters
    ----------
    directory : str
        The checkpoint directory.
    run_dir : str
        The run directory holding the model files.
    manifest : dict, optional
        :func:`read_manifest`'s result, if already read.

    Returns
    -------
    list of str
        The files rewritten (those that differed from the checkpoint's).
    """
    manifest = manifest or read_manifest(directory)
    if manifest is None:
        return []
    wanted = {"model-last.params": manifest["params"]}
    if manifest.get("best"):
        wanted["model-best.params"] = manifest["best"]["params"]
    restored = []
    for name, source in wanted.items():
        target = os.path.join(run_dir, name)
        digest = manifest["sha256"][source]
        if os.path.isfile(target) and _sha256(target) == digest:
            continue
        src = os.path.join(directory, source)
        atomic_save(target, lambda tmp, src=src: shutil.copyfile(src, tmp))
        restored.append(target)
    return restored


def load_checkpoint(trainer, directory, manifest=None):
    """Restore parameters, optimizer state and trainer state from a checkpoint.

    Parameters
    ----------
    trainer : TripletTrainer
        Built from the same config as the run that saved the checkpoint.
    directory : str
    manifest : dict, optional
        :func:`read_manifest`'s result, if already read.

    Returns
    -------
    int
        The epoch the checkpoint ends; :meth:`TripletTrainer.fit` continues after it.

    Raises
    ------
    CheckpointError
        No checkpoint, a corrupt one, or one whose parameters or state do not fit.
    """
    manifest = manifest or read_manifest(directory)
    if manifest is None:
        raise CheckpointError(f"no checkpoint in {directory} (no {MANIFEST})")
    params_file = os.path.join(directory, manifest["params"])
    contexts = trainer.contexts
    try:
        trainer.net.load_parameters(params_file, ctx=contexts)
    except (AssertionError, mx.base.MXNetError, ValueError, KeyError) as e:
        first = error_line(e)
        raise CheckpointError(
            f"{params_file} does not fit the model the config describes "
            f"({trainer.config.model}, embedding size {trainer.config.embedding_size}): {first}"
        ) from None
    where = os.path.join(directory, manifest["optimizer"])
    try:
        arrays = mx.nd.load(where)
    except mx.base.MXNetError as e:
        raise CheckpointError(f"{where}: unreadable ({mxnet_reason(e)})") from None
    if not isinstance(arrays, dict):
        arrays = {}
    load_optimizer_state(trainer.trainer, arrays, manifest["optimizer_state"], where)
    trainer.load_state_dict(manifest["trainer"])
    _load_training_weights(trainer, directory, manifest)
    bad = _non_finite(trainer.net)
    if bad:
        raise CheckpointError(f"{params_file}: parameter {bad} holds NaN or infinite values")
    return int(manifest["epoch"])


def _load_training_weights(trainer, directory, manifest):
    """With ``--ema-decay``: the loaded parameters are the averages, the checkpoint's
    training weights go into the net."""
    average = getattr(trainer, "average", None)
    name = manifest.get("training")
    if average is None and name is None:
        return
    if average is None or name is None:
        raise CheckpointError(
            f"{os.path.join(directory, MANIFEST)}: saved "
            f"{'with' if name else 'without'} --ema-decay, resumed "
            f"{'with' if average is not None else 'without'} it"
        )
    where = os.path.join(directory, name)
    try:
        arrays = mx.nd.load(where)
        training = [arrays[str(i)] for i in range(len(arrays))]
        average.restore(training, manifest["trainer"].get("average_updates", 0))
    except (mx.base.MXNetError, KeyError, ValueError) as e:
        raise CheckpointError(f"{where}: does not fit the model ({error_line(e)})") from None


def _non_finite(net):
    """The name of the first parameter with a NaN or infinite value, else None."""
    for name, param in net.collect_params().items():
        if not np.isfinite(param.data().asnumpy()).all():
            return name
    return None
