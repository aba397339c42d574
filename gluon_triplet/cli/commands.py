"""The registry of subcommands: ``gluon-triplet <name>`` runs ``gluon_triplet.cli.<name>``'s
``main``. A new subcommand is a new module and its name here."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["SUBCOMMANDS", "subcommand"]

#: The subcommands, each the module of this package that runs it.
SUBCOMMANDS = tuple("train embed evaluate view launch index search export pack serve".split())


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
    return importlib.import_module(f".{name}", __package__)
