"""Progress bars for the slow steps outside the epochs: decoding pictures, embedding a
split for evaluation. A bar goes to stderr only on a terminal, only while the package
logs INFO lines (not with ``--quiet``), and only once its step has run for
:data:`DELAY` seconds: quick steps print nothing."""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

__all__ = ["DELAY", "slow_progress"]

#: Seconds a step runs before its bar appears (tqdm's ``delay``).
DELAY = 3.0


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def slow_progress(total: int, desc: str, unit: str = "img", enabled: Optional[bool] = None) -> Any:
    """A tqdm bar of ``total`` items that appears after :data:`DELAY` seconds, or an
    object with the same ``update``/``close`` that draws nothing.

    Parameters
    ----------
    total : int
    desc : str
    unit : str
    enabled : bool, optional
        Default: stderr is a terminal and the ``gluon_triplet`` logger shows INFO.
    """
    if enabled is None:
        enabled = sys.stderr.isatty() and logging.getLogger("gluon_triplet").isEnabledFor(
            logging.INFO
        )
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        delay=DELAY,
        leave=False,
        mininterval=0.5,
    )
