"""A training run on disk: its directory and lock, checkpoints, TensorBoard files, PNG
pictures, the report lines, the wiring from a config to a finished run, and loading a
finished run back."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".rundir": ("RunDir",),
        ".api": ("evaluate", "load_run"),
        ".checkpoint": ("load_checkpoint", "save_checkpoint"),
        ".board": ("BoardCallback", "write_projector"),
        ".pictures": ("PlotCallback",),
    },
)

if TYPE_CHECKING:
    from .api import evaluate, load_run
    from .board import BoardCallback, write_projector
    from .checkpoint import load_checkpoint, save_checkpoint
    from .pictures import PlotCallback
    from .rundir import RunDir
