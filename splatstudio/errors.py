"""Errors raised by SplatStudio stages.

Every error a user can cause names the offending file or folder and says what is wrong, so the
CLI and the GUI can show it as is. Importing this module imports nothing heavy.
"""

from __future__ import annotations

import errno
import shutil
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


class Cancelled(SplatStudioError):
    """The user cancelled the stage; its partial outputs are kept for a later resume."""


class OutOfGpuMemory(StageError):
    """The GPU ran out of memory even at the strictest memory tier."""


class ProjectError(SplatStudioError):
    """The project folder is missing, locked, or written by an incompatible version."""


def is_disk_full(e: BaseException) -> bool:
    """True when `e` is an OSError for a full disk or an exceeded disk quota."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def _megabytes(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n < 10e9 else f"{n / 1e9:,.1f} GB"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system of `path` (or of its nearest existing parent); None
    when it cannot be read."""
    p = Path(path)
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


class DiskFullError(StageError):
    """The disk that holds a project is full, or would be before a stage could finish.

    Args:
        path: the file or folder being written (or the project, for a preflight refusal).
        needed: bytes the stage needs (estimate), when known.
        free: bytes free on that disk, when known.
        what: the operation, e.g. "writing train/checkpoints/step_000100.pt".
    """

    def __init__(self, path: str | Path, needed: int | None = None, free: int | None = None,
                 what: str | None = None):
        self.path, self.needed, self.free = str(path), needed, free
        parts = [f"{path}: no space left on the disk"]
        if what:
            parts[0] += f" while {what}"
        if free is not None:
            parts.append(f"{_megabytes(free)} free")
        if needed is not None:
            parts.append(f"about {_megabytes(needed)} needed")
        super().__init__(
            "; ".join(parts) + ". Free some space (or move the project to a larger disk) and run "
            "again: what was finished is kept and the run resumes"
        )

    @classmethod
    def from_os_error(cls, e: OSError, fallback: str | Path) -> DiskFullError:
        """The error for an ENOSPC/EDQUOT `e`, naming its file (else `fallback`)."""
        path = e.filename or fallback
        return cls(path, free=free_bytes(path))
