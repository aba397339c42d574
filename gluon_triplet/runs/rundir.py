"""A run directory: the files one training run writes, created, checked and locked here.

Every name a run directory holds is spelled once, as an attribute of :class:`RunDir`::

    <logdir>/<run name>/
        config.json         the resolved Config (RunDir.CONFIG)
        metrics.json        every epoch's metrics, "finished" at the end (RunDir.METRICS)
        model-best.params   parameters of the best epoch by test P@1 (RunDir.BEST_PARAMS)
        model-last.params   parameters of the last epoch (RunDir.LAST_PARAMS)
        checkpoint/         what --resume continues from (RunDir.CHECKPOINT)
        train.log           the log, appended by every part of the run (RunDir.LOG)
        data.json           the fingerprint of the data (runs.datacheck.DATA_RECORD)
        .lock               locked while a process trains in it (RunDir.LOCK)
        events.out.*, embedding*/, raw_input/, *.png   mxboard and the pictures

Nothing here imports MXNet.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from ..config import DIST_KVSTORES, REMOVED_KEYS, Config
from ..errors import ConfigError, RunDirInUse
from ..locks import exclusive_lock, probe_lock
from ..nets.architectures import legacy_cnn_architecture

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["RunDir", "RunDirInUse"]


def upgrade_recorded(recorded: Dict[str, Any]) -> Dict[str, Any]:
    """A ``config.json`` of an earlier version in today's keys: its CNN settings
    (``conv_block``, ``channels``, ``batch_norm``, ...) become the ``architecture`` they
    built, with the rules of their time (a run from before ``conv_block`` was strided, one
    from before ``batch_norm`` had none)."""
    d = dict(recorded)
    old = {key: d.pop(key) for key in REMOVED_KEYS if key in d}
    if d.get("model") == "cnn" and d.get("architecture") is None:
        # Runs that did not record input_shape predate pictures over 32 px: their CNN is
        # the one of small pictures, whatever their exact size.
        shape = d.get("input_shape") or _SMALL_PICTURES
        d["architecture"] = legacy_cnn_architecture(old, shape)
    # Before --val-fraction no validation split was carved: every training sample trained.
    d.setdefault("val_fraction", 0.0)
    return d


_SMALL_PICTURES = (28, 28)


def _taken(path: str) -> FileExistsError:
    return FileExistsError(f"run directory {path!r} already exists; choose another --run-name")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "data"


class RunDir:
    """One run directory, by path; the constructor only names it (see :meth:`create`,
    :meth:`open`).

    Parameters
    ----------
    path : str or os.PathLike
    """

    CONFIG = "config.json"
    METRICS = "metrics.json"
    BEST_PARAMS = "model-best.params"
    LAST_PARAMS = "model-last.params"
    #: The parameter files by the name ``load_run(params=...)`` takes.
    PARAMS = {"best": BEST_PARAMS, "last": LAST_PARAMS}
    CHECKPOINT = "checkpoint"
    LOG = "train.log"
    LOCK = ".lock"

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def file(self, name: str) -> str:
        """Path of ``name`` inside the run directory."""
        return os.path.join(self.path, name)

    @property
    def config_path(self) -> str:
        return self.file(self.CONFIG)

    @property
    def metrics_path(self) -> str:
        return self.file(self.METRICS)

    @property
    def checkpoint_dir(self) -> str:
        return self.file(self.CHECKPOINT)

    @property
    def log_path(self) -> str:
        return self.file(self.LOG)

    @property
    def lock_path(self) -> str:
        return self.file(self.LOCK)

    @staticmethod
    def check_new(logdir: str, run_name: Optional[str] = None) -> None:
        """Fail, writing nothing, if :meth:`create` could not make a run directory.

        Raises
        ------
        NotADirectoryError, PermissionError
            ``logdir`` (or a parent) is a file, or is not writable.
        FileExistsError
            ``<logdir>/<run_name>`` exists.
        """
        if os.path.exists(logdir) and not os.path.isdir(logdir):
            raise NotADirectoryError(f"logs dir {logdir!r} exists and is not a directory")
        existing = os.path.abspath(logdir)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise NotADirectoryError(
                f"cannot create logs dir {logdir!r}: {existing!r} is not a directory"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"logs dir {logdir!r} is not writable")
        if run_name and os.path.exists(os.path.join(logdir, run_name)):
            raise _taken(os.path.join(logdir, run_name))

    @classmethod
    def create(cls, logdir: str, run_name: Optional[str] = None, dataset: str = "data") -> RunDir:
        """Make a fresh run directory, never reusing or overwriting one.

        Parameters
        ----------
        logdir : str
            Created if needed.
        run_name : str, optional
            The directory's name; default ``<YYYYmmdd-HHMMSS>-<dataset>`` (``-2``, ``-3``...
            when taken).
        dataset : str
            The dataset's name, for the default name.
        """
        try:
            os.makedirs(logdir, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create logs dir {logdir!r}: {e.strerror}") from None
        if not os.access(logdir, os.W_OK | os.X_OK):
            raise OSError(f"logs dir {logdir!r} is not writable")
        if run_name:
            path = os.path.join(logdir, run_name)
            try:
                os.makedirs(path)
            except FileExistsError:
                raise _taken(path) from None
            return cls(path)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = os.path.join(logdir, f"{stamp}-{_slug(dataset)}")
        for i in range(1, 1000):
            path = base if i == 1 else f"{base}-{i}"
            try:
                os.makedirs(path)
                return cls(path)
            except FileExistsError:
                continue
        raise FileExistsError(f"could not find a free run directory name like {base!r}")

    @classmethod
    def open(cls, path: PathLike) -> RunDir:
        """An existing run directory: it must hold ``config.json``.

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist or has no ``config.json``.
        """
        run = cls(path)
        if not os.path.isdir(run.path):
            raise FileNotFoundError(f"run directory {run.path!r} does not exist")
        if not os.path.isfile(run.config_path):
            raise FileNotFoundError(f"{run.path!r} is not a run directory: it has no {cls.CONFIG}")
        return run

    def load_config(self) -> Config:
        """The run's :class:`~gluon_triplet.config.Config`; a ConfigError names the file."""
        return self.load_recorded()[0]

    def load_recorded(self) -> Tuple[Config, Dict[str, Any]]:
        """:meth:`load_config`, and the JSON object as the file holds it (an earlier
        version's keys too), from one read of the file."""
        return Config.load_recorded(self.config_path, upgrade=upgrade_recorded)

    def params_path(self, params: str = "best") -> str:
        """Path of a parameter file, checked to exist.

        Parameters
        ----------
        params : {"best", "last"} or str
            ``best`` (the epoch chosen on validation MAP@R, or in older runs on test P@1),
            ``last`` (end of training), a file name inside the run directory, or a path.

        Raises
        ------
        FileNotFoundError
            Naming the parameter files the run has.
        """
        name = self.PARAMS.get(params, params)
        path = name if os.path.isabs(name) else self.file(name)
        if not os.path.isfile(path):
            have = sorted(f for f in os.listdir(self.path) if f.endswith(".params"))
            raise FileNotFoundError(
                f"{self.path}: no parameter file {name!r} (have: {', '.join(have) or 'none'})"
            )
        return path

    def is_finished(self) -> bool:
        """Whether ``metrics.json`` says training ran to its last epoch."""
        try:
            with open(self.metrics_path, encoding="utf-8") as f:
                return bool(json.load(f).get("finished", False))
        except (OSError, ValueError, AttributeError):
            return False  # no metrics yet

    def check_resumable(self, config: Config) -> Optional[Dict[str, Any]]:
        """The checkpoint manifest to continue from, or None to restart from epoch 1.

        A run with no checkpoint is restarted only when it wrote nothing an epoch writes.

        Raises
        ------
        ConfigError
            A distributed run, a finished run, or outputs without a checkpoint.
        CheckpointError
            A damaged checkpoint.
        """
        from .manifest import MANIFEST, read_manifest

        if config.kvstore in DIST_KVSTORES:
            raise ConfigError(
                f"{self.path}: --resume does not support distributed runs (kvstore "
                f"{config.kvstore}): their optimizer state lives on the parameter servers"
            )
        if self.is_finished():
            raise ConfigError(
                f"{self.path} already finished its {config.epochs} epochs; nothing to resume"
            )
        manifest = read_manifest(self.checkpoint_dir)
        if manifest is None:
            written = [
                f for f in os.listdir(self.path) if f == self.METRICS or f.endswith(".params")
            ]
            if written:
                raise ConfigError(
                    f"{self.path} has no checkpoint to resume from (no {self.CHECKPOINT}/"
                    f"{MANIFEST}) but holds {', '.join(sorted(written))}, which a restart "
                    "would overwrite"
                )
        return manifest

    def _in_use(self, holder: str) -> RunDirInUse:
        return RunDirInUse(f"{self.path} is in use by {holder}")

    def check_free(self) -> None:
        """Fail if another process trains in this run directory; writes nothing.

        Raises
        ------
        RunDirInUse
            ``<path> is in use by process PID on HOST``.
        """
        probe_lock(self.lock_path, self._in_use)

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run directory exclusively inside the block
        (:func:`~gluon_triplet.locks.exclusive_lock` on ``.lock``: freed with the process
        however it ends).

        Raises
        ------
        RunDirInUse
            Another process (or another open file in this one) holds it.
        """
        with exclusive_lock(self.lock_path, self._in_use):
            yield self
