"""Signals as exceptions: SIGINT, SIGTERM, SIGHUP, SIGQUIT raise :class:`Interrupted`.

One helper for training, ``view`` and ``launch``: the code in the block unwinds through
its ``finally`` clauses (closing files, stopping child processes) and the command line
turns the exception into ``error: ...`` and exit status ``128 + signum``, as a shell
reports a process killed by that signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator, Optional, Sequence

__all__ = ["HANDLED_SIGNALS", "Interrupted", "interrupts"]

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
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: Any) -> None:
        for s, h in previous.items():
            signal.signal(s, h)
        raise Interrupted(signum)

    for s in signums:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
