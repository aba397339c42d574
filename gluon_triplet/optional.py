"""Optional dependencies (faiss, onnx, onnxruntime, Starlette, uvicorn, python-multipart:
``pip install gluon-triplet[serve]``), imported by the features that need them; a missing
one is one :class:`ImportError` line naming the pip package."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency

__all__ = ["PIP_NAMES", "MissingDependency", "require"]

#: The pip package that provides each optional module.
PIP_NAMES = {
    "faiss": "faiss-cpu",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "python_multipart": "python-multipart",
    "starlette": "starlette",
    "uvicorn": "uvicorn",
}


def require(module: str, feature: str) -> ModuleType:
    """Import an optional module, or explain which package to install.

    Parameters
    ----------
    module : str
        A key of :data:`PIP_NAMES`, e.g. ``"faiss"``.
    feature : str
        What needs it, for the message, e.g. ``"the nearest-neighbour index"``.

    Raises
    ------
    MissingDependency
        An ``ImportError``: ``"<feature> needs the <pip> package: pip install <pip>
        (or pip install 'gluon-triplet[serve]')"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        # Only a missing optional package is explained; a broken install surfaces as is.
        missing = getattr(e, "name", None) or ""
        top = module.split(".")[0]
        if missing != module and missing.split(".")[0] not in (top, PIP_NAMES[module]):
            raise
        pip = PIP_NAMES[module]
        raise MissingDependency(
            f"{feature} needs the {pip} package: pip install {pip} "
            "(or pip install 'gluon-triplet[serve]')"
        ) from None
