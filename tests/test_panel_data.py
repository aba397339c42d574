"""bench/panel_data.py: the splits, and one set built from a tiny fake git snapshot."""

import dataclasses
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

__all__: list = []

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "panel_data", os.path.join(ROOT, "bench", "panel_data.py")
)
panel_data = importlib.util.module_from_spec(_spec)
sys.modules["panel_data"] = panel_data  # dataclasses look their module up
_spec.loader.exec_module(panel_data)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_closed_split_is_stratified_seeded_and_order_free():
    items = {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(5)], "c": ["c0"]}
    train, test = panel_data.split_closed(items)
    assert [len(test[k]) for k in "abc"] == [2, 1, 0]
    assert [len(train[k]) for k in "abc"] == [8, 4, 1]
    for k in items:
        assert sorted(train[k] + test[k]) == sorted(items[k])
        assert not set(train[k]) & set(test[k])
    shuffled = {k: list(reversed(v)) for k, v in reversed(list(items.items()))}
    assert panel_data.split_closed(shuffled) == (train, test)
    # a class's split does not depend on the other classes
    assert panel_data.split_closed({"a": items["a"]})[1]["a"] == test["a"]
    assert panel_data.split_closed(items, seed=1)[1]["a"] != test["a"]


def test_open_split_halves_the_classes_and_keeps_groups_whole():
    assert panel_data.split_open(["c1", "c2", "c3", "c4", "c5"]) == (
        ["c1", "c2"],
        ["c3", "c4", "c5"],
    )
    classes = ["A.1", "A.2", "B.1", "B.2", "B.3", "C.1", "D.1", "D.2"]
    train, test = panel_data.split_open(reversed(classes), group_of=lambda c: c.split(".")[0])
    assert train == ["A.1", "A.2"]  # adding B would pass half of the 8 classes
    assert test == ["B.1", "B.2", "B.3", "C.1", "D.1", "D.2"]
    with pytest.raises(ValueError):
        panel_data.split_open(["only"])


def test_cap_per_class_is_a_seeded_subset():
    items = {"a": [f"{i:02d}" for i in range(30)], "b": ["x", "y"]}
    capped = panel_data.cap_per_class(items, 10)
    assert len(capped["a"]) == 10 and set(capped["a"]) <= set(items["a"])
    assert capped["b"] == ["x", "y"]
    assert capped == panel_data.cap_per_class(items, 10)
    assert panel_data.cap_per_class(items, None)["a"] == items["a"]


def _png(value, size=(12, 10), mode="RGB"):
    buf = io.BytesIO()
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _pgm(value, size=(8, 9)):
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0]), value, np.uint8)).save(buf, format="PPM")
    return buf.getvalue()


def _snapshot(mirror_root, repo, files):
    """A bare git directory at ``mirror_root/<owner>+<name>/repo`` holding ``files``."""
    work = os.path.join(mirror_root, "work-" + repo.replace("/", "-"))
    for path, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(work, path)), exist_ok=True)
        with open(os.path.join(work, path), "wb") as f:
            f.write(data)
    git = ["git", "-C", work, "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", work], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "data"], check=True)
    bare = os.path.join(mirror_root, repo.replace("/", "+"), "repo")
    subprocess.run(["git", "clone", "-q", "--bare", work, bare], check=True)
    shutil.rmtree(work)


@needs_git
def test_closed_set_from_a_snapshot(tmp_path, monkeypatch):
    mirror = str(tmp_path / "mirror")
    files = {f"Dataset/{c}/{i}.png": _png(40 * c + i) for c in range(3) for i in range(5)}
    files["Dataset/2/huge.jpg"] = b"\xff" * 200_001  # the size filter leaves it out
    files["README.md"] = b"not a picture"
    _snapshot(mirror, "fake/signs", files)
    spec = dataclasses.replace(panel_data.PANEL["sign-digits"], repo="fake/signs", commit="HEAD")
    monkeypatch.setitem(panel_data.PANEL, "sign-digits", spec)

    cache = str(tmp_path / "cache")
    path = panel_data.prepare("sign-digits", cache, mirror)
    assert path == os.path.join(cache, "sign-digits")
    for c in "012":
        assert len(os.listdir(os.path.join(path, "train", c))) == 4
        assert len(os.listdir(os.path.join(path, "test", c))) == 1
    name = os.listdir(os.path.join(path, "test", "0"))[0]
    with open(os.path.join(path, "test", "0", name), "rb") as f:
        assert f.read() == files[f"Dataset/0/{name}"]  # PNG bytes kept as they are
    summary = panel_data.summarize(path)
    assert (summary["train"], summary["test"], summary["classes_shared"]) == (12, 3, 3)
    assert (summary["median_hw"], summary["colour"]) == ("10x12", "colour")
    record = json.load(open(os.path.join(path, "panel.json")))
    assert record["train"] == {"pictures": 12, "classes": 3}

    # prepared once: reused while the spec matches, rebuilt when it changes or on force
    stamp = os.path.getmtime(os.path.join(path, "panel.json"))
    assert panel_data.prepare("sign-digits", cache, mirror) == path
    assert os.path.getmtime(os.path.join(path, "panel.json")) == stamp
    monkeypatch.setitem(panel_data.PANEL, "sign-digits", dataclasses.replace(spec, cap=2))
    panel_data.prepare("sign-digits", cache, mirror)
    assert panel_data.summarize(path)["pictures"] == 6
    assert not os.path.exists(path + ".partial")


@needs_git
def test_open_set_from_a_snapshot_converts_pgm(tmp_path, monkeypatch):
    mirror = str(tmp_path / "mirror")
    files = {
        f"CroppedYale/yaleB0{s}/yaleB0{s}_P00A+00{i}.pgm": _pgm(10 * s + i)
        for s in range(1, 5)
        for i in range(3)
    }
    files["CroppedYale/yaleB01/yaleB01_P00_Ambient.pgm"] = _pgm(0)
    _snapshot(mirror, "fake/faces", files)
    spec = dataclasses.replace(panel_data.PANEL["yale-faces"], repo="fake/faces", commit="HEAD")
    monkeypatch.setitem(panel_data.PANEL, "yale-faces", spec)

    path = panel_data.prepare("yale-faces", str(tmp_path / "cache"), mirror)
    assert sorted(os.listdir(os.path.join(path, "train"))) == ["yaleB01", "yaleB02"]
    assert sorted(os.listdir(os.path.join(path, "test"))) == ["yaleB03", "yaleB04"]
    pictures = sorted(os.listdir(os.path.join(path, "train", "yaleB01")))
    assert pictures == [f"yaleB01_P00A+00{i}.png" for i in range(3)]  # no Ambient, now PNG
    with Image.open(os.path.join(path, "train", "yaleB01", pictures[1])) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (8, 9))
        assert np.asarray(im).max() == 11
    summary = panel_data.summarize(path)
    assert (summary["classes_shared"], summary["colour"]) == (0, "grey")


def test_a_missing_snapshot_says_what_to_fetch(tmp_path, monkeypatch):
    spec = dataclasses.replace(panel_data.PANEL["dtd10"], repo="nobody/absent")
    monkeypatch.setitem(panel_data.PANEL, "dtd10", spec)
    with pytest.raises(panel_data.SourceMissing, match="fetch github:nobody/absent first"):
        panel_data.prepare("dtd10", str(tmp_path / "cache"), str(tmp_path / "mirror"))
    assert not os.path.exists(tmp_path / "cache" / "dtd10")
    assert (
        panel_data.main(
            ["--sets", "dtd10", "--cache", str(tmp_path / "c"), "--mirror-root", str(tmp_path)]
        )
        == 1
    )


def test_the_panel_covers_the_brief():
    specs = list(panel_data.PANEL.values())
    assert len(specs) >= 6 and len({s.kind for s in specs}) == len(specs)
    assert sum(s.protocol == "open" for s in specs) >= 2
    assert {s.colour for s in specs} == {"grey", "colour"}
    for s in specs:
        assert s.protocol in ("open", "closed") and s.licence and s.source
        assert (s.repo is None) == (s.commit is None)
