"""Signals as exceptions: SIGINT, SIGTERM, SIGHUP, SIGQUIT raise :class:`Interrupted`.

One helper for training, ``view`` and ``launch``: the code in the block unwinds through
its ``finally`` clauses (closing files, stopping child processes) and the command line
turns the exception into ``error: ...`` and exit status ``128 + signum``, as a shell
reports a process killed by that signal.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from types import TracebackType
from typing import Any, Dict, Iterator, Optional, Sequence

__all__ = ["HANDLED_SIGNALS", "Interrupted", "handlers", "interrupts"]

#: The signals :func:`interrupts` turns into :class:`Interrupted` by default: Ctrl-C,
#: ``kill``, a hang-up (the terminal or ssh session went away) and a quit (Ctrl-\\).
HANDLED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A signal arrived inside :func:`interrupts`; ``signum`` says which."""

    def __init__(self, signum: int, message: Optional[str] = None) -> None:
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def interrupts(signums: Sequence[int] = HANDLED_SIGNALS) -> Iterator[None]:
    """Raise :class:`Interrupted` in the main thread when one of ``signums`` arrives.

    The first signal restores the previous handlers, so a second one (e.g. a hung
    clean-up interrupted again) gets the default behaviour. Outside the main thread,
    where handlers cannot be set, the block runs with the caller's handlers.
    """
    previous: Dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        for s, h in previous.items():
            signal.signal(s, h)
        raise Interrupted(signum)

    with handlers(signums, handler) as saved:
        previous.update(saved)
        try:
            yield
        except Interrupted as e:
            _free_half_built(e.__traceback__)
            raise


@contextlib.contextmanager
def handlers(signums: Sequence[int], handler: Any) -> Iterator[Dict[int, Any]]:
    """``handler`` for ``signums`` inside the block, the previous handlers (yielded) after
    it. Outside the main thread, where handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {s: signal.getsignal(s) for s in signums}
    for s in signums:
        signal.signal(s, handler)
    try:
        yield previous
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _free_half_built(tb: Optional[TracebackType]) -> None:
    """Free the interrupted frames' locals now, without the noise of half-built objects.

    The signal can land between two bytecodes of a constructor: MXNet's ``NDArray``
    (like its other handle owners) then exists without ``self.handle``, and its
    ``__del__`` fails with AttributeError, which Python prints as a traceback after the
    one-line ``error:`` (seen in a real interrupted run). Those failures, and only
    those, are dropped; the traceback's lines stay, its frames lose their locals.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _is_half_built(unraisable):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        traceback.clear_frames(tb)
    finally:
        sys.unraisablehook = previous


def _is_half_built(unraisable: Any) -> bool:
    """A destructor that failed for want of the ``handle`` its constructor never set."""
    return (
        isinstance(unraisable.exc_value, AttributeError)
        and "has no attribute 'handle'" in str(unraisable.exc_value)
        and getattr(unraisable.object, "__name__", "") == "__del__"
    )
