"""The fingerprint of a run's data (``data.json``), and the check ``--resume`` makes of it."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

from ..config import Config
from ..data.fingerprint import data_fingerprint, fingerprint_changes
from ..errors import DataError
from ..io import atomic_write_text
from .rundir import RunDir

__all__ = ["DATA_RECORD", "check_resumed_data", "record_data"]

#: The file in a run directory that holds the fingerprint of its data.
DATA_RECORD = "data.json"

logger = logging.getLogger("gluon_triplet")


def _fingerprint(config: Config) -> Dict[str, Any]:
    return data_fingerprint(config.dataset, config.data_dir)


def _write(run_dir: RunDir, doc: Dict[str, Any]) -> None:
    atomic_write_text(run_dir.file(DATA_RECORD), json.dumps(doc, indent=1, sort_keys=True) + "\n")


def record_data(run_dir: RunDir, config: Config) -> None:
    """Write the fingerprint of ``config``'s data into ``run_dir``."""
    _write(run_dir, _fingerprint(config))


def _recorded(run_dir: RunDir) -> Optional[Dict[str, Any]]:
    path = run_dir.file(DATA_RECORD)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable record of the run's data ({e})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: the record of the run's data must be a JSON object")
    return doc


def check_resumed_data(
    run_dir: RunDir, config: Config, accept_changed: bool = False, restart: bool = False
) -> None:
    """Refuse to resume ``run_dir`` on data other than the data it trained on.

    A run directory made before data was recorded resumes with an INFO line (and gets
    its record now). ``restart`` (no epoch finished, nothing to mix) and
    ``accept_changed`` take changed data, recording it (the latter with a WARNING).

    Raises
    ------
    DataError
        The data changed: the message says what, and how to go on.
    """
    old = _recorded(run_dir)
    new = _fingerprint(config)
    if old is None:
        logger.info(
            "%s records no fingerprint of its data (it predates them): cannot check that "
            "%s is unchanged; recording it now",
            run_dir.path,
            config.dataset,
        )
        _write(run_dir, new)
        return
    changes = fingerprint_changes(old, new)
    if changes is None:
        return
    if not (restart or accept_changed):
        raise DataError(
            f"{config.dataset} changed since {run_dir.path} started: {changes}; resuming "
            "would mix two datasets in one history: restore the data, start a new run, or "
            "pass --accept-changed-data"
        )
    if accept_changed and not restart:
        logger.warning(
            "%s changed (%s); continuing on it (--accept-changed-data)", config.dataset, changes
        )
    _write(run_dir, new)
