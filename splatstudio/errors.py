"""Errors raised by SplatStudio stages.

Every error a user can cause names the offending file or folder and says what is wrong, so the
CLI and the GUI can show it as is. Importing this module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path


class SplatStudioError(Exception):
    """Base class of every error SplatStudio raises on purpose."""


class InputError(SplatStudioError):
    """Bad user input: a missing, empty, unreadable or malformed file or folder.

    Args:
        path: the file or folder at fault (shown first in the message).
        message: what is wrong with it, and where possible what to do.
    """

    def __init__(self, path: str | Path | None, message: str):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(SplatStudioError):
    """An invalid configuration value (names the field and the accepted values)."""


class StageError(SplatStudioError):
    """A stage failed for a reason other than bad input (the message says which stage and why)."""


class StageNotBuilt(SplatStudioError):
    """The stage exists in the pipeline but is not available in this version yet."""


class Cancelled(SplatStudioError):
    """The user cancelled the stage; its partial outputs are kept for a later resume."""


class OutOfGpuMemory(StageError):
    """The GPU ran out of memory even at the strictest memory tier."""


class ProjectError(SplatStudioError):
    """The project folder is missing, locked, or written by an incompatible version."""
