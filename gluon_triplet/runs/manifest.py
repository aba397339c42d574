"""The checkpoint manifest: which files make a checkpoint, and their checksums (read
without MXNet)."""

import json
import os

from ..errors import CheckpointError
from ..io import sha256_file

__all__ = ["FORMAT", "MANIFEST", "read_manifest"]

#: The manifest's file name inside the checkpoint directory.
MANIFEST = "checkpoint.json"
#: The manifest format this version writes and reads.
FORMAT = 1


def read_manifest(directory):
    """The manifest of the checkpoint in ``directory``, checked against its files.

    Returns
    -------
    dict or None
        None when there is no checkpoint (no manifest) in ``directory``.

    Raises
    ------
    CheckpointError
        Unreadable manifest, a missing file, or a file whose hash does not match.
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint manifest ({e})") from None
    needed = ("format", "epoch", "params", "optimizer", "sha256", "optimizer_state", "trainer")
    missing = [k for k in needed if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint manifest (no {', '.join(missing)})")
    if manifest["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {manifest['format']!r} is unknown")
    best = manifest.get("best")
    if best is not None and not isinstance(best, dict):
        raise CheckpointError(f"{path}: bad best-epoch entry {best!r}")
    names = [manifest["params"], manifest["optimizer"]]
    if manifest.get("training") is not None:  # None: saved without --ema-decay
        names.append(manifest["training"])
    if best is not None:
        names.append(best.get("params"))
    for name in names:
        if not isinstance(name, str) or os.path.basename(name) != name:
            raise CheckpointError(f"{path}: bad file name {name!r}")
        file = os.path.join(directory, name)
        if not os.path.isfile(file):
            raise CheckpointError(f"{path}: names {name}, which is missing")
        if sha256_file(file) != manifest["sha256"].get(name):
            raise CheckpointError(f"{file}: does not match the checksum in {MANIFEST}")
    return manifest
