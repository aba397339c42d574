"""signals.interrupts: a signal becomes Interrupted, and leaves nothing half-built behind."""

import gc
import os
import signal
import sys
import time

import pytest

from gluon_triplet.signals import Interrupted, interrupts


def _cut_while_holding(make):
    """Get SIGINT while this frame holds ``make()``: the object is freed with the frame,
    when the traceback goes."""
    held = make()  # noqa: F841 - kept alive by this frame
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the handler raises here, long before the sleep ends


def _half_built_ndarray():
    """What a Ctrl-C between two bytecodes of ``NDArray.__init__`` leaves: an NDArray
    whose ``handle`` was never set."""
    from mxnet import nd

    return nd.NDArray.__new__(nd.NDArray)


def test_a_signal_becomes_interrupted_naming_it():
    with pytest.raises(Interrupted, match="interrupted by SIGTERM") as excinfo:
        with interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert excinfo.value.signum == signal.SIGTERM


def test_handlers_are_restored_after_the_first_signal_and_on_exit():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted):
        with interrupts():
            assert signal.getsignal(signal.SIGINT) is not before
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts():
        pass
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def unraisable(monkeypatch):
    """What Python would print as "Exception ignored in ...", recorded instead."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def test_an_object_cut_in_its_constructor_prints_no_traceback(unraisable):
    # MXNet's NDArray.__del__ frees self.handle; cut before the handle was set, it fails
    # with AttributeError, which Python prints as "Exception ignored in ... Traceback"
    # after the user's clean one-line error (seen once in a real interrupted run).
    with pytest.raises(Interrupted) as excinfo:
        with interrupts():
            _cut_while_holding(_half_built_ndarray)
    del excinfo
    gc.collect()
    assert [str(u.exc_value) for u in unraisable] == []


def test_other_failures_in_destructors_are_still_reported(unraisable):
    class Broken:
        def __del__(self):
            raise AttributeError("a real bug, not an interrupt")

    with pytest.raises(Interrupted):
        with interrupts():
            _cut_while_holding(Broken)
    gc.collect()
    assert [str(u.exc_value) for u in unraisable] == ["a real bug, not an interrupt"]
