"""Edited versions of a project's splat: saved from the viewer, exported by the export stage.

The trained splat ``train/splat.ply`` is never overwritten: an edit (gaussians deleted in the
viewer) is saved as a new file ``edits/<name>.ply`` (standard INRIA 3DGS PLY, same world frame:
ENU metres for georeferenced projects), and ``edits/versions.json`` lists the versions::

    {"schema_version": 1,
     "versions": [{"name": "v001", "file": "edits/v001.ply", "source": "train/splat.ply",
                   "created": ISO time, "gaussians": N, "removed": M, "steps": [labels],
                   "note": text}, ...]}

``ExportConfig.source`` names the version to export (:func:`resolve_source`): empty for the
trained splat, else a version name (``v001``) or its file (``edits/v001.ply``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..project import now_iso, read_json, write_json_atomic
from .artifacts import EDITS_INDEX, TRAIN_SPLAT

__all__ = ["EDITS_DIR", "TRAINED", "list_versions", "resolve_source", "save_version"]

EDITS_DIR = Path(EDITS_INDEX.rel).parent.as_posix()  # declared in pipeline/artifacts.py
TRAINED = TRAIN_SPLAT.rel
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _index(root: Path) -> Path:
    return EDITS_INDEX.path(root)


def list_versions(project_root: str | Path) -> list[dict[str, Any]]:
    """The saved versions of the project at `project_root`, oldest first (entries as in the
    module docstring); ``[]`` when none was saved.

    Raises:
        InputError: ``edits/versions.json`` exists but is malformed.
    """
    path = _index(Path(project_root))
    if not path.is_file():
        return []
    try:
        versions = read_json(path).get("versions") or []
        if not all(isinstance(v, dict) and "name" in v and "file" in v for v in versions):
            raise ValueError("each version needs a name and a file")
    except Exception as e:  # ProjectError, AttributeError, ValueError
        raise InputError(path, f"malformed list of edited versions ({e})") from None
    return versions


def save_version(
    project_root: str | Path,
    splats: Any,
    *,
    source: str = TRAINED,
    removed: int = 0,
    steps: list[str] | None = None,
    note: str = "",
    name: str | None = None,
) -> dict[str, Any]:
    """Write `splats` as a new version ``edits/<name>.ply`` and list it.

    Args:
        project_root: the project folder.
        splats: the edited :class:`~splatstudio.splats.model.Splats`.
        source: what it was edited from (project-relative file).
        removed: gaussians deleted from the source; steps: the edit steps' labels.
        note: free text; name: the version's name (default the next ``vNNN``).

    Returns:
        The new entry of ``versions.json``.

    Raises:
        ConfigError: a name that is not a plain file name, or one that exists.
    """
    from ..splats.io import save_splats

    root = Path(project_root)
    versions = list_versions(root)
    taken = {v["name"] for v in versions}
    if name is None:
        k = len(versions) + 1
        while f"v{k:03d}" in taken:
            k += 1
        name = f"v{k:03d}"
    if not _NAME.match(name) or name in taken:
        raise ConfigError(f"version name {name!r}: must be a new plain name (letters, digits, "
                          f"'_', '-', '.'; taken: {', '.join(sorted(taken)) or 'none'})")
    rel = f"{EDITS_DIR}/{name}.ply"
    save_splats(splats, root / rel, format="ply")  # atomic (temporary file + rename)
    entry = {"name": name, "file": rel, "source": source, "created": now_iso(),
             "gaussians": int(splats.n), "removed": int(removed), "steps": list(steps or []),
             "note": note}
    write_json_atomic(_index(root), {"schema_version": 1, "versions": [*versions, entry]})
    return entry


def resolve_source(project_root: str | Path, source: str) -> Path:
    """The splat file that `source` names (see the module docstring).

    Raises:
        InputError: no such version, or its file is missing.
    """
    root = Path(project_root)
    s = (source or "").strip()
    if s in ("", TRAINED, "train"):
        return root / TRAINED
    for v in list_versions(root):
        if s in (v["name"], v["file"]):
            path = root / v["file"]
            if not path.is_file():
                raise InputError(path, f"the file of edited version {v['name']} is missing")
            return path
    names = ", ".join(v["name"] for v in list_versions(root)) or "none saved"
    raise InputError(_index(root), f"no edited version {s!r} (versions: {names}; empty = the "
                     "trained splat)")
