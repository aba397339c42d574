"""A fingerprint of the data behind a dataset spec, and what changed between two.

``--resume`` compares the fingerprint a run recorded with the data's current one, so an
interrupted run never continues on other data (a history that mixes two datasets).

- ``folder:DIR``: every picture file ``scan_folder`` finds, as (relative path, size,
  modification time), kept per directory as short hashes, so that a change can be told
  as "3 files added under c1/, 1 removed under c2/".
- ``npz:FILE``, ``idx:DIR``, ``rec:PREFIX``, ``image:...``, and mnist/fashion-mnist read
  from ``--data-dir``: each file's size, modification time and SHA-256 (of the whole file
  up to 16 MiB; above, of its first and last MiB: the headers, an npz's member table with
  its CRCs, a .rec's index is a file of its own and hashed whole).
- mnist and fashion-mnist from the cache (checked against their published hashes when
  downloaded) and the bundled mnist-5k: the name is the fingerprint.

Nothing here imports MXNet.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional

from ..io import sha256_file
from .idx_dir import IDX_FILES

__all__ = ["FINGERPRINT_FORMAT", "data_fingerprint", "fingerprint_changes"]

#: The format of the fingerprint this version writes.
FINGERPRINT_FORMAT = 1

# Files up to this size are hashed whole; larger ones by their first and last _EDGE bytes.
_WHOLE = 16 << 20
_EDGE = 1 << 20
# Shown per kind of change, in this order, at most this many directories each.
_SHOWN = 4


def _short(text: str, n: int) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def _file_entry(path: str) -> Dict[str, Any]:
    st = os.stat(path)
    if st.st_size <= _WHOLE:
        digest = sha256_file(path)
    else:
        with open(path, "rb") as f:
            h = hashlib.sha256(f.read(_EDGE))
            f.seek(st.st_size - _EDGE)
            h.update(f.read(_EDGE))
            digest = h.hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def _files(paths: List[str]) -> Dict[str, Any]:
    return {os.path.abspath(p): _file_entry(p) for p in paths if os.path.isfile(p)}


def _folder(root: str) -> Dict[str, Any]:
    from .folder import scan_folder

    root = os.path.abspath(os.path.expanduser(root))
    groups: Dict[str, List[str]] = {}
    for path in scan_folder(root).paths:
        rel = os.path.relpath(path, root)
        st = os.stat(path)
        token = f"{_short(rel, 12)}:{_short(f'{st.st_size}:{st.st_mtime_ns}', 8)}"
        groups.setdefault(os.path.dirname(rel), []).append(token)
    return {"root": root, "groups": {g: sorted(t) for g, t in sorted(groups.items())}}


def data_fingerprint(spec: str, data_dir: Optional[str] = None) -> Dict[str, Any]:
    """The fingerprint of the data ``load_dataset(spec, data_dir)`` reads (JSON-able).

    Raises
    ------
    DataError, OSError
        The folder cannot be listed (as loading it would fail).
    """
    doc: Dict[str, Any] = {"format": FINGERPRINT_FORMAT, "dataset": spec}
    kind, _, path = spec.partition(":")
    path = os.path.expanduser(path)
    named = spec in ("mnist", "fashion-mnist") and data_dir is not None
    if named or kind == "idx":
        where = str(data_dir) if named else path
        if named:
            doc["data_dir"] = os.path.abspath(where)
        doc["files"] = _files([os.path.join(where, f + e) for f in IDX_FILES for e in ("", ".gz")])
    elif kind == "folder":
        doc.update(_folder(path))
    elif kind == "npz":
        doc["files"] = _files([path])
    elif kind == "rec":
        prefix = path[:-4] if path.endswith((".rec", ".idx")) else path
        doc["files"] = _files([prefix + ".rec", prefix + ".idx", prefix + ".json"])
    elif kind == "image":
        doc["files"] = _files([os.path.expanduser(p) for p in path.split(",") if p])
    return doc


def _file_changes(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        before, now = old.get(name), new.get(name)
        if before is None:
            out.append(f"{name} was added")
        elif now is None:
            out.append(f"{name} is missing")
        elif before["size"] != now["size"]:
            out.append(f"{name} changed size ({before['size']} -> {now['size']} bytes)")
        elif before["sha256"] != now["sha256"]:
            out.append(f"{name} changed (same size, other content)")
        elif before["mtime_ns"] != now["mtime_ns"]:
            out.append(f"{name} was modified (same size and sampled content, newer time)")
    return out


def _folder_changes(old: Dict[str, List[str]], new: Dict[str, List[str]]) -> List[str]:
    counts: Dict[str, Dict[str, int]] = {"added": {}, "removed": {}, "changed": {}}
    for group in sorted(set(old) | set(new)):
        before = dict(t.split(":") for t in old.get(group, ()))
        now = dict(t.split(":") for t in new.get(group, ()))
        where = f"{group}/" if group else "the top directory"
        for what, n in (
            ("added", len(now.keys() - before.keys())),
            ("removed", len(before.keys() - now.keys())),
            ("changed", sum(before[k] != now[k] for k in before.keys() & now.keys())),
        ):
            if n:
                counts[what][where] = n
    out = []
    for what, per_group in counts.items():
        items = list(per_group.items())
        for where, n in items[:_SHOWN]:
            noun = "file" if n == 1 else "files"
            detail = " (size or time)" if what == "changed" else ""
            out.append(f"{n} {noun} {what}{detail} under {where}")
        if len(items) > _SHOWN:
            rest = sum(n for _, n in items[_SHOWN:])
            out.append(f"{rest} more {what} under {len(items) - _SHOWN} other directories")
    return out


def fingerprint_changes(old: Dict[str, Any], new: Dict[str, Any]) -> Optional[str]:
    """What changed from fingerprint ``old`` to ``new``, in words; None when nothing did."""
    if old.get("dataset") != new.get("dataset"):
        return f"the dataset was {old.get('dataset')!r}, now {new.get('dataset')!r}"
    if "groups" in old or "groups" in new:
        if old.get("root") != new.get("root"):
            return f"the folder was {old.get('root')}, now {new.get('root')}"
        changes = _folder_changes(old.get("groups", {}), new.get("groups", {}))
    else:
        changes = _file_changes(old.get("files", {}), new.get("files", {}))
    return ", ".join(changes) or None
