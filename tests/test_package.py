"""What importing the package does before MXNet loads: the OpenMP settings."""

import importlib
import os
import subprocess
import sys

import pytest

import gluon_triplet

_OPENMP = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _import_fresh(monkeypatch, mxnet_loaded=False, **env):
    """Re-run the package's import-time code with ``env`` as the only OpenMP variables;
    return them afterwards. Submodules stay cached, so only ``__init__`` runs again."""
    for name in _OPENMP:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if not mxnet_loaded:
        monkeypatch.delitem(sys.modules, "mxnet")
    importlib.reload(gluon_triplet)
    return {name: os.environ.get(name) for name in _OPENMP}


def test_openmp_threads_wait_passively_by_default(monkeypatch):
    got = _import_fresh(monkeypatch)
    assert got["OMP_WAIT_POLICY"] == "PASSIVE"
    assert got["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0)))
    assert got["GOMP_SPINCOUNT"] is None


@pytest.mark.parametrize(
    "env, policy",
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice is kept
        ({"GOMP_SPINCOUNT": "300000"}, None),  # a spin count chosen: no policy added
    ],
)
def test_a_chosen_wait_is_left_alone(monkeypatch, env, policy):
    got = _import_fresh(monkeypatch, **env)
    assert got["OMP_WAIT_POLICY"] == policy
    for name, value in env.items():
        assert got[name] == value


def test_nothing_is_set_once_mxnet_is_loaded(monkeypatch):
    # OpenMP read its settings when MXNet loaded: setting them now would only mislead
    got = _import_fresh(monkeypatch, mxnet_loaded=True)
    assert got == {name: None for name in _OPENMP}


def test_a_fresh_interpreter_gets_passive_waits():
    env = {k: v for k, v in os.environ.items() if k not in _OPENMP}
    code = "import gluon_triplet, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "PASSIVE"
