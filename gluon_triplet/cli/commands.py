"""The registry of subcommands: ``gluon-triplet <name>`` runs the ``main`` of the module
:data:`SUBCOMMANDS` names. A new subcommand is a new module and one line here."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["SUBCOMMANDS", "subcommand"]

#: ``gluon-triplet <name> ...`` runs ``gluon_triplet.cli.<module>.main``.
SUBCOMMANDS = {
    "train": "train",
    "embed": "embed",
    "evaluate": "evaluate",
    "view": "view",
    "launch": "launch",
    "index": "index",
    "search": "search",
    "export": "export",
    "pack": "pack",
    "serve": "serve",
}


def subcommand(name: str) -> ModuleType:
    """The module of subcommand ``name``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    if name not in SUBCOMMANDS:
        raise ValueError(
            f"unknown subcommand {name!r}; choose one of: {', '.join(sorted(SUBCOMMANDS))} "
            "(or train options alone)"
        )
    return importlib.import_module(f".{SUBCOMMANDS[name]}", __package__)
