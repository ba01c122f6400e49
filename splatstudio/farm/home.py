"""Tasks of the coordinator's ``HOME`` worker: it serves project files to the farm.

Inputs travel as ``read_blob`` tasks (one dask key per content, ``blob-<sha256>``) rather than
``client.scatter``: dask can compute a task's result again after the worker holding it died,
while scattered data is lost with it (FARM.md section 2.4).
"""

from __future__ import annotations

from pathlib import Path

from . import FarmError
from .items import check_relpath, sha256_bytes


def read_blob(root: str, rel: str, sha256: str) -> bytes:
    """The bytes of project file `rel` under `root`, checked against `sha256`.

    Raises:
        FarmError: `rel` leaves the project, or the file changed since the item was made.
        OSError: the file cannot be read.
    """
    base = Path(root).resolve()
    path = base / check_relpath(rel)
    data = path.read_bytes()
    got = sha256_bytes(data)
    if got != sha256:
        raise FarmError(f"{path}: changed since the farm item was made (SHA-256 {got[:12]}…, "
                        f"expected {sha256[:12]}…)")
    return data
