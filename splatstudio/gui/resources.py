"""Where the application's resources (style sheet, icons, GLSL shaders) live."""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    """The ``resources/`` folder: ``$SPLATSTUDIO_RESOURCES`` if set, else the one next to the
    ``splatstudio`` package (a source checkout or an editable install).

    Raises:
        FileNotFoundError: no resources folder was found (names the places looked at).
    """
    candidates = []
    env = os.environ.get("SPLATSTUDIO_RESOURCES")
    if env:
        candidates.append(Path(env))
    here = Path(__file__).resolve()
    candidates += [here.parents[2] / "resources", here.parent / "resources"]
    for c in candidates:
        if (c / "shaders").is_dir():
            return c
    raise FileNotFoundError(
        "SplatStudio resources not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); set SPLATSTUDIO_RESOURCES to the resources/ folder"
    )


def resource_path(*parts: str) -> Path:
    """Path of a file inside :func:`resources_dir`, e.g. ``resource_path("shaders", "x")``."""
    return resources_dir().joinpath(*parts)


def read_text(*parts: str) -> str:
    """Text content of a resource file (UTF-8)."""
    return resource_path(*parts).read_text(encoding="utf-8")
