"""The application's resources: Qt style sheet (``style.qss``), icons (``icons/*.svg``) and GLSL
shaders (``shaders/splat.vert``, ``shaders/splat.frag``).

They are package data of :mod:`splatstudio.resources` (declared in ``pyproject.toml``), found with
:mod:`importlib.resources`, so an editable install, a wheel, ``pip install --target`` and a
PyInstaller bundle all find them. ``$SPLATSTUDIO_RESOURCES`` overrides the location (a folder
with the same layout, e.g. a modified style sheet or shaders under development).

This module imports neither Qt nor torch.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

ENV_VAR = "SPLATSTUDIO_RESOURCES"
"""Environment variable naming a resources folder that replaces the packaged one."""

REQUIRED = ("style.qss", "icons/splatstudio.svg", "shaders/splat.vert", "shaders/splat.frag")
"""Files every resources folder must hold (relative paths)."""


def _check(root: Path, origin: str) -> Path:
    missing = [r for r in REQUIRED if not (root / r).is_file()]
    if missing:
        raise FileNotFoundError(
            f"SplatStudio resources in {root} ({origin}) are incomplete: missing "
            + ", ".join(missing)
            + (f"; fix or unset {ENV_VAR}" if origin == ENV_VAR else "; reinstall SplatStudio")
        )
    return root


def _copy_tree(src: Traversable, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_dir():
            if item.name != "__pycache__":
                _copy_tree(item, dst / item.name)
        elif not item.name.endswith((".py", ".pyc")):
            (dst / item.name).write_bytes(item.read_bytes())


@cache
def _packaged_dir() -> Path:
    """The packaged resources as a real folder (Qt needs file paths). A package imported from
    a zip file has none: its resources are copied once to a temporary folder, removed at exit."""
    root = resources.files(__name__)
    if isinstance(root, Path):
        return _check(root, "package data")
    tmp = Path(tempfile.mkdtemp(prefix="splatstudio-resources-"))
    atexit.register(shutil.rmtree, tmp, True)
    _copy_tree(root, tmp)
    return _check(tmp, f"package data copied from {root}")


def resources_dir() -> Path:
    """The resources folder: ``$SPLATSTUDIO_RESOURCES`` if set, else the package's own.

    Returns:
        An existing folder holding at least :data:`REQUIRED`.

    Raises:
        FileNotFoundError: the folder named by ``$SPLATSTUDIO_RESOURCES``, or the installed
            package data, lacks a required file (the message names the folder and the files).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return _check(Path(env).expanduser(), ENV_VAR)
    return _packaged_dir()


def resource_path(*parts: str) -> Path:
    """Path of a file inside :func:`resources_dir`, e.g. ``resource_path("shaders", "x")``."""
    return resources_dir().joinpath(*parts)


def read_text(*parts: str) -> str:
    """Text content of a resource file (UTF-8).

    Raises:
        FileNotFoundError: no such resource (or see :func:`resources_dir`).
    """
    return resource_path(*parts).read_text(encoding="utf-8")
