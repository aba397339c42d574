"""Lazy exports (PEP 562): a package lists its public names and the module of each; the
module is imported when a name is first read, so ``import gluon_triplet`` and
``gluon-triplet --help`` load no MXNet."""

import importlib
from typing import Callable, List, Mapping, Sequence, Tuple

__all__ = ["attach"]


def attach(
    package: str, exports: Mapping[str, Sequence[str]]
) -> Tuple[Callable[[str], object], Callable[[], List[str]], List[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Relative module name (``".triplets"``) -> the public names it defines.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> List[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(where))

    return __getattr__, __dir__, sorted(where)
