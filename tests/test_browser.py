"""TensorBoard's Embedding Projector, rendered by a real browser.

Trains briefly, serves the run with ``gluon-triplet view`` on 127.0.0.1, opens ``/#projector``
in headless Chromium, prints the page to PDF and reads its text with ``pdftotext``: the
projector lives in shadow DOM, so ``--dump-dom`` would not show it, but the printed page does.
A screenshot is kept in ``tests/artifacts/`` (git-ignored) for people to look at.

Needs Debian's ``chromium`` and ``poppler-utils`` (``.ci/run`` installs them); skips without
them, unless ``GLUON_TRIPLET_REQUIRE_BROWSER=1`` (set by ``.ci/run`` once they are installed)
turns the skip into a failure.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from gluon_triplet.cli import main, setup_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
POINTS = 60
EMBEDDING_SIZE = 16
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--run-all-compositor-stages-before-draw",
    "--window-size=1400,1000",
]


def _tool(names, package):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    reason = f"{' or '.join(names)} not installed (apt-get install {package})"
    if os.environ.get("GLUON_TRIPLET_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GLUON_TRIPLET_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tools():
    return {
        "chromium": _tool(("chromium", "chromium-browser"), "chromium"),
        "pdftotext": _tool(("pdftotext",), "poppler-utils"),
    }


@pytest.fixture(scope="module")
def served(tools, tmp_path_factory):
    """A one-epoch run with per-epoch snapshots, served by `gluon-triplet view`."""
    logdir = tmp_path_factory.mktemp("browser")
    train = ["train", "--dataset", "mnist-5k", "--model", "mlp", "--hidden", "32"]
    train += ["--embedding-size", str(EMBEDDING_SIZE), "--miner", "offline", "--epochs", "1"]
    train += ["--projector-samples", str(POINTS), "--projector-every", "1", "--no-plots", "-q"]
    out = logdir / "train-output.txt"
    patch = pytest.MonkeyPatch()
    with open(out, "w") as f:
        patch.setattr(sys, "stdout", f)
        patch.setattr(sys, "stderr", f)
        try:
            code = main([*train, "--logdir", str(logdir), "--run-name", "run"])
        finally:
            patch.undo()
            setup_logging(quiet=False)
    assert code == 0, out.read_text()
    with open(logdir / "run" / "projector_config.pbtxt") as f:
        tensors = re.findall(r'tensor_name: "([^"]+)"', f.read())

    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from gluon_triplet.cli import main; sys.exit(main(sys.argv[1:]))",
            "view",
            str(logdir),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=120)
        assert lines and lines[0].startswith("TensorBoard: http://127.0.0.1:"), lines
        url = lines[0].split()[1]
        # The page asks for the run list once; wait until TensorBoard has loaded the run.
        deadline = time.monotonic() + 60
        while "run" not in _projector_runs(url):
            assert time.monotonic() < deadline, "projector never listed the run"
            time.sleep(0.5)
        yield {"url": url, "tensors": tensors, "logdir": logdir}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _projector_runs(url):
    try:
        with urllib.request.urlopen(f"{url}data/plugin/projector/runs", timeout=10) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return []


def _chromium(tools, tmp_path, url, output_flag, budget_ms):
    profile = tmp_path / f"profile-{time.monotonic_ns()}"  # a fresh profile every time
    cmd = [tools["chromium"], *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    cmd += [f"--virtual-time-budget={budget_ms}", output_flag, f"{url}#projector"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _pdf_text(tools, tmp_path, url, budget_ms):
    pdf = tmp_path / f"projector-{budget_ms}.pdf"
    _chromium(tools, tmp_path, url, f"--print-to-pdf={pdf}", budget_ms)
    text = subprocess.run(
        [tools["pdftotext"], str(pdf), "-"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return " ".join(text.split())  # layout breaks lines anywhere


def test_projector_renders_in_chromium(tools, served, tmp_path):
    # The projector fetches and projects the tensor after the page loads; on a slow machine
    # the first virtual-time budget may end before that, so allow one longer try.
    for budget in (20000, 60000):
        text = _pdf_text(tools, tmp_path, served["url"], budget)
        if "Total variance described" in text:
            break
    assert "PROJECTOR" in text, text
    # the data panel: how many tensors the run has, and which one is shown
    assert f"{len(served['tensors'])} tensors found" in text, text
    shown = re.search(r"tensors found (\S+)", text).group(1)
    assert shown in served["tensors"], (shown, served["tensors"])
    assert f"Metadata: {shown}/metadata.tsv" in text, text
    dim = 28 * 28 if shown == "raw_input" else EMBEDDING_SIZE
    assert re.search(rf"Points: {POINTS}\b", text), text
    assert re.search(rf"Dimension: {dim}\b", text), text
    # PCA is the default projection; the variance line appears only once it has run
    assert "PCA" in text and "T-SNE" in text
    assert re.search(r"Total variance described: \d+(\.\d+)?%", text), text
    assert {"embedding", "embedding_000001", "raw_input"} <= set(served["tensors"])


def _axis_pixels(rgb: np.ndarray) -> int:
    """Pixels of the scene's green y axis (TensorBoard's page has no other green)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((g > 150) & (r < 120) & (b < 120)).sum())


def test_projector_screenshot(tools, served, tmp_path):
    from PIL import Image

    # As in the PDF test: on a loaded machine the first virtual-time budget may end before
    # the projector has fetched and drawn the tensor, so allow one longer try.
    for budget in (20000, 60000):
        png = tmp_path / f"projector-{budget}.png"
        _chromium(tools, tmp_path, served["url"], f"--screenshot={png}", budget)
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            assert im.size == (1400, 1000)
            rgb = np.asarray(im.convert("RGB")).astype(int)
        if _axis_pixels(rgb) > 50:
            break
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # WebGL drew the scene: its axis, and the black sprite tiles fill more of the canvas
    # than text on a page without data does.
    assert _axis_pixels(rgb) > 50
    assert ((r < 40) & (g < 40) & (b < 40))[120:, 330:1100].mean() > 0.015
    os.makedirs(ARTIFACTS, exist_ok=True)
    shutil.copy(png, os.path.join(ARTIFACTS, "projector.png"))
