"""Every error the library raises on purpose, in one leaf module that imports nothing.

The command line turns each into one ``error:`` line and a non-zero exit status; the
library raises them with a message that names the file, key or value at fault.
"""

__all__ = [
    "CheckpointError",
    "CollapseError",
    "ConfigError",
    "DataError",
    "DiskFullError",
    "ExportError",
    "ImageFileError",
    "IndexFileError",
    "LockedError",
    "MissingDependency",
    "RunDirInUse",
    "TooManyPixels",
]


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key."""


class DataError(ValueError):
    """A dataset file or spec is missing, malformed or inconsistent."""


class ImageFileError(ValueError):
    """A picture file or record cannot be read or does not fit the requested size."""


class TooManyPixels(ImageFileError):
    """A picture's header declares more pixels than the limit (``--max-pixels``): it is
    refused before any decoder runs, since a small file can inflate to gigabytes."""


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model or trainer at hand."""


class CollapseError(FloatingPointError):
    """The embedding collapsed during training and automatic recovery did not help; the
    message says what was tried and which setting to change."""


class ExportError(ValueError):
    """The net cannot be exported in the asked format, or the export does not reproduce it."""


class IndexFileError(ValueError):
    """An index directory is missing, incomplete, corrupt or inconsistent."""


class MissingDependency(ImportError):
    """An optional package is not installed; the message names the pip package."""


class DiskFullError(OSError):
    """A write failed because the disk (or the quota) is full, or MXNet could not write
    a file; the message names the file and the space left. ``errno`` is ENOSPC."""


class LockedError(OSError):
    """Another process holds the lock of a path (a run directory, a ``pack`` prefix); the
    message names the holder's PID and host."""


class RunDirInUse(LockedError):
    """Another process trains in the run directory (holds its lock)."""
