"""Work items: what a farm worker is asked to do, and the checks on what comes back.

A :class:`WorkItem` names an item function (``kind``, see :data:`ITEM_FUNCTIONS`), a JSON
``spec``, the project files it reads (``inputs``: path relative to the project root -> SHA-256)
and the dask resources it needs. An item function runs in a child process of the worker
(:mod:`splatstudio.farm.itemproc`) as ``fn(spec, in_dir, out_dir, events)``: its inputs lie under
``in_dir`` at their project paths, it writes its outputs into ``out_dir``, and the worker returns
them with their SHA-256 (:func:`verify_outputs` checks them before anything is written).

Design: ``../shared/docs/FARM.md`` sections 2.6 and 4.2.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import FarmError

#: Item kinds -> ``"module:function"`` (imported in the item process).
ITEM_FUNCTIONS: dict[str, str] = {
    "sift": "splatstudio.pipeline.sfm:sift_item",
    "match": "splatstudio.pipeline.sfm:match_item",
    "train_block": "splatstudio.pipeline.blocks:train_block_item",
}

__all__ = ["ITEM_FUNCTIONS", "ItemFailed", "OutputHashMismatch", "WorkItem", "sha256_bytes",
           "sha256_file", "verify_outputs"]  # fmt: skip


class OutputHashMismatch(FarmError):
    """An item's output did not arrive as the worker hashed it (corrupted in transit)."""


class ItemFailed(FarmError):
    """An item function raised a SplatStudio error on its worker (bad input: not retried
    elsewhere). The message is the worker's."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class WorkItem:
    """One unit of farm work.

    Attributes:
        kind: a key of :data:`ITEM_FUNCTIONS`.
        item_id: unique within its run (``sift-003``).
        spec: JSON-serialisable arguments of the item function.
        inputs: project files the item reads: path relative to the project root (POSIX) ->
            SHA-256 (hex).
        resources: dask resources the item needs (``{"MACHINE": 1}``, ``{"TRAIN": 1}``).
        cost: relative cost, for progress (e.g. images in a chunk).
    """

    kind: str
    item_id: str
    spec: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    cost: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ITEM_FUNCTIONS:
            raise ValueError(f"unknown item kind {self.kind!r}; known: {', '.join(ITEM_FUNCTIONS)}")
        for rel in self.inputs:
            check_relpath(rel)

    def spec_hash(self) -> str:
        """SHA-256 of kind, spec and inputs (what the item's result depends on)."""
        text = json.dumps({"kind": self.kind, "spec": self.spec, "inputs": self.inputs},
                          sort_keys=True, separators=(",", ":"))  # fmt: skip
        return sha256_bytes(text.encode())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_relpath(rel: str) -> str:
    """`rel` if it is a relative POSIX path inside its root (no ``..``, not absolute).

    Raises:
        FarmError: otherwise (a worker never reads or writes outside the project).
    """
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel or not rel:
        raise FarmError(f"item path {rel!r} is not a relative path inside the project")
    return rel


def verify_outputs(result: dict[str, Any]) -> dict[str, bytes]:
    """The files of a worker's result, after checking each against the SHA-256 the worker
    computed.

    Args:
        result: ``{"state": "done", "files": {name: bytes}, "sha256": {name: hex}}``, or
            ``{"state": "failed", "error": message}``.

    Raises:
        ItemFailed: the item failed on the worker.
        OutputHashMismatch: a file is missing from the hashes or does not match.
    """
    if result.get("state") == "failed":
        raise ItemFailed(str(result.get("error")))
    files, hashes = result.get("files", {}), result.get("sha256", {})
    if set(files) != set(hashes):
        raise OutputHashMismatch(f"outputs {sorted(files)} and their hashes {sorted(hashes)} differ")
    for name, data in files.items():
        check_relpath(name)
        if sha256_bytes(data) != hashes[name]:
            raise OutputHashMismatch(f"output {name}: SHA-256 {sha256_bytes(data)[:12]}… is not "
                                     f"the worker's {hashes[name][:12]}…")
    return files
