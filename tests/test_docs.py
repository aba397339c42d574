"""The docs cannot drift: every Python block runs alone, every scalar tag a run writes is
documented, and every relative link resolves (the CLI reference: test_cli_reference.py).
The docs stay a reference, not a lab notebook: no page over 400 lines, and no commit hash or
issue number in the docs, the measurement logs (bench/results/) or the package's text."""

import ast
import glob
import io
import json
import os
import re
import subprocess
import sys
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
RESULTS = sorted(glob.glob(os.path.join(ROOT, "bench", "results", "*.md")))


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
    for path in DOCS + RESULTS:
        text = re.sub(r"^```.*?^```", "", _read(path), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#")[0]
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file))
            assert os.path.exists(resolved), f"{os.path.relpath(path, ROOT)}: broken link {target}"


# --- a reference, not a lab notebook -------------------------------------------------------

MAX_PAGE_LINES = 400
# docs/cli.md is generated from the parsers (test_cli_reference.py): its length follows them.
LONG_PAGES_ALLOWED = {"cli.md"}

# 7 to 40 hex digits with at least one letter and one digit, standing alone: a commit hash.
_HASH = re.compile(r"(?<![0-9A-Za-z_])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w])")
_ISSUE = re.compile(r"\bissues?\s*#?\s*\d+", re.I)
# "the fifth pass", "(second pass)": pointers into the measurement logs' chapters
_PASS = re.compile(r"\b(first|second|third|fourth|fifth|sixth|seventh)\s+pass(es)?\b", re.I)
# A dataset's upstream pin (`github:owner/repo ... commit 55008b5f`) names another project's
# commit, which the data's provenance needs; it is not a pointer into this project's history.
_UPSTREAM = re.compile(r"github:[\w.-]+/[\w.-]+")


def notebook_references(text, passes=True):
    """``(line, match)`` of every commit hash, issue number and (with ``passes``) pass
    reference in ``text``; lines that cite an upstream ``github:`` source may hold a hash."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        hashes = [] if _UPSTREAM.search(line) else _HASH.findall(line)
        found += [(number, m) for m in hashes]
        found += [(number, m.group(0)) for m in _ISSUE.finditer(line)]
        if passes:
            found += [(number, m.group(0)) for m in _PASS.finditer(line)]
    return found


def python_text(source):
    """``(line, text)`` of the comments and string literals of Python ``source`` (code is
    not prose); a literal that is a hex digest alone (a checksum, a pinned upstream commit)
    is data and left out."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found.append((tok.start[0], tok.string))
        elif tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):  # an f-string: scan its source
                value = tok.string
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{7,64}", value):
                continue
            found.append((tok.start[0], tok.string))
    return found


def test_no_docs_page_is_over_400_lines():
    pages = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    assert pages
    long = {}
    for path in pages:
        lines = _read(path).count("\n")
        if lines > MAX_PAGE_LINES and os.path.basename(path) not in LONG_PAGES_ALLOWED:
            long[os.path.relpath(path, ROOT)] = lines
    assert not long, (
        f"pages over {MAX_PAGE_LINES} lines (move measurement logs to bench/results/): {long}"
    )


def test_docs_and_logs_name_no_commit_hash_or_issue():
    """README, docs/ and bench/results/ say what a change was in words."""
    bad = []
    for path in DOCS + RESULTS:
        # the logs keep their chapters ("second pass") but not hashes or issue numbers
        passes = path in DOCS
        for number, match in notebook_references(_read(path), passes=passes):
            bad.append(f"{os.path.relpath(path, ROOT)}:{number}: {match}")
    assert not bad, "say what the change or issue was, in words:\n" + "\n".join(bad)


def test_the_package_and_bench_name_no_commit_hash_or_issue():
    """Comments, docstrings and messages of gluon_triplet/ and bench/: no hashes, no issues."""
    files = sorted(glob.glob(os.path.join(ROOT, "gluon_triplet", "**", "*.py"), recursive=True))
    files += sorted(glob.glob(os.path.join(ROOT, "bench", "*.py")))
    assert len(files) > 20
    bad = []
    for path in files:
        for start, text in python_text(_read(path)):
            for offset, match in notebook_references(text, passes=False):
                bad.append(f"{os.path.relpath(path, ROOT)}:{start + offset - 1}: {match}")
    assert not bad, "say what the change or issue was, in words:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "text",
    [
        "measured at " + "acb" + "3623 on a quiet machine",
        "see the fix in " + "92c86cd" + "0123456789abcdef0123456789abcdef0",
        "as Issue " + "15 asks",
        "(issue #" + "13)",
        "chosen in the " + "fifth pass",
    ],
)
def test_the_notebook_checks_can_fail(text):
    assert notebook_references(text)


def test_the_notebook_checks_let_plain_text_through():
    assert notebook_references("60,000 pictures in 15.3 s, 2026-12-02, P@1 0.9091, 1000000") == []
    # an upstream dataset's pin, and a checksum literal in code
    assert notebook_references("| github:Uranium2/recognition (commit 55008b5f) |") == []
    assert python_text('SHA1 = "763e7fa3757d93b0cdec073cef058b2004252c17"  # MNIST\n') == [
        (1, "# MNIST")
    ]
    assert python_text("x = 1  # before " + "acb" + "3623\n") == [(1, "# before acb" + "3623")]
