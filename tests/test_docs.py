"""The docs cannot drift: every Python block runs alone, every scalar tag a run writes is
documented, and every relative link resolves (the CLI reference: test_cli_reference.py)."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def python_blocks():
    """``(id, code)`` for every fenced ```python block of README.md and docs/*.md."""
    found = []
    for path in DOCS:
        text = _read(path)
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{os.path.relpath(path, ROOT)}:{line}", match.group(1)))
    return found


BLOCKS = python_blocks()


def test_the_docs_have_python_blocks():
    assert any(name.startswith("README.md:") for name, _ in BLOCKS)
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[n for n, _ in BLOCKS])
def test_python_block_runs_alone(code, tmp_path):
    """Pasted alone into a fresh interpreter, in an empty directory, with no network."""
    env = dict(os.environ, MXNET_HOME=str(tmp_path / "mxnet-home"))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


# mxboard's generated protos and tensorboard.compat.proto define the same message names and
# cannot be loaded into one process, so the event files are read in a fresh interpreter.
_READ_TAGS = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
tags = set()
for run_dir in sys.argv[1:]:
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags.update(acc.Tags()["scalars"])
print(json.dumps(sorted(tags)))
"""


def test_every_scalar_tag_a_run_writes_is_documented(tmp_path):
    from gluon_triplet.cli import main

    small = ["--dataset", "mnist-5k", "--epochs", "1", "--no-plots", "--projector-samples", "8"]
    small += ["--logdir", str(tmp_path), "-q"]
    # the default recipe (online mining, normalised) and the reference one (offline, raw)
    assert main([*small, "--run-name", "default"]) == 0
    assert main([*small, "--run-name", "reference", "--preset", "reference"]) == 0
    proc = subprocess.run(
        [sys.executable, "-c", _READ_TAGS, str(tmp_path / "default"), str(tmp_path / "reference")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    tags = json.loads(proc.stdout)
    assert "train/loss" in tags and "time/epoch_seconds" in tags
    documented = set(re.findall(r"`([a-z_]+/[a-z_0-9]+)`", _read(f"{ROOT}/docs/projector.md")))
    missing = sorted(set(tags) - documented)
    assert not missing, f"scalar tags a run writes but docs/projector.md lacks: {missing}"


def test_relative_links_resolve():
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", _read(path), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#")[0]
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file))
            assert os.path.exists(resolved), f"{os.path.relpath(path, ROOT)}: broken link {target}"
