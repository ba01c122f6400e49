"""Training in spatial blocks (``train.blocks`` > 1): cut the capture on the ENU ground plane,
train each block as its own :class:`~splatstudio.pipeline.train_session.TrainSession`, merge.

Plan (:func:`plan_blocks`): the registered frames (a panorama's views are one frame, a photo is
its own) are partitioned by :func:`splatstudio.farm.partition.make_partition` (a power diagram
of their centres, blocks of equal frame counts); a block trains on the views of the frames in
its *expanded* cell and starts from the model's points in that cell; the held-out views are
the stage's own split (every ``holdout_every``-th image), so a block is evaluated on the
held-out views of its frames. Merge (:func:`merge_blocks`): each block keeps only the
Gaussians whose mean it *owns* (:meth:`Partition.owner`), so every Gaussian of the merged splat
comes from exactly one block, and the merged splat is evaluated on all held-out views.

Where blocks run: with a farm (``--farm``) each block trains on a peer with the ``TRAIN``
resource in *segments* of ``checkpoint_every`` steps (:func:`train_block_item`): a segment
starts from the block's last checkpoint shipped back into the project and returns the next
one, so a peer that dies loses at most one segment and the segment reruns elsewhere from the
last shipped step. Without a farm the blocks train here one after the other. The number of
peers never changes what is produced: a block's training depends only on its inputs and seed.

Layout (``train/blocks/``)::

    plan.json            the partition: centroids, weights, margin, per block its views,
                         frames owned and points
    b<NN>/               a block's session folder: checkpoints/, metrics.json, curve.jsonl,
                         preview.png and, when its steps are done, splat.ply

Source: VastGaussian (Lin et al., CVPR 2024, arXiv 2402.17427): position-based data selection
in expanded cells and a merge that keeps each cell's own Gaussians. Not done here: its
visibility-based camera selection and decoupled appearance modelling.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig, config_to_dict, update_config
from ..errors import StageError
from ..events import Emitter
from ..project import Project, read_json, write_json_atomic
from .artifacts import TRAIN_BLOCKS, georef_model
from .train import (
    image_paths,
    load_cameras,
    load_inputs,
    make_session,
    resolve_device,
    split_views,
)

BLOCKS_REL = TRAIN_BLOCKS.rel
"""The blocks' folder, relative to the project."""

__all__ = ["BlockPlan", "merge_blocks", "plan_blocks", "run_blocks", "train_block_item"]


def frame_of(name: str) -> str:
    """The frame of COLMAP image `name`: the panorama id of ``<view>/<pano id>.jpg``, the
    image itself for ``photos/<file>``."""
    head, tail = name.split("/", 1)
    return name if head == "photos" else Path(tail).stem


@dataclasses.dataclass
class BlockPlan:
    """The partition of a capture into training blocks.

    Attributes:
        partition: the :class:`~splatstudio.farm.partition.Partition` (ENU ground plane).
        views: per block, the image names it trains and evaluates on (sorted).
        owned_frames: per block, the frames it owns.
        evaluation: the images the merged splat is evaluated on: the held-out views, or the
            first 8 training views without any (as a session evaluates); not shipped.
    """

    partition: Any
    views: list[list[str]]
    owned_frames: list[list[str]]
    evaluation: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``plan.json``'s object and a farm segment's ``plan``: centroids ``[K, 2]`` and
        weights ``[K]`` (ENU metres, square metres), margin_m, and per block its views and
        owned frames (``evaluation`` stays here)."""
        p = self.partition
        return {"centroids": p.centroids.tolist(), "weights": p.weights.tolist(),
                "margin_m": p.margin_m,
                "blocks": [{"views": v, "owned_frames": f}
                           for v, f in zip(self.views, self.owned_frames, strict=True)]}


def plan_blocks(root: Path, config: TrainConfig) -> BlockPlan:
    """Partition the registered frames of project folder `root` into ``config.blocks`` blocks
    (seed ``config.seed``).

    Raises:
        InputError: no georeferenced model.
        StageError: fewer registered frames than blocks, or a block without views.
    """
    from ..farm.partition import make_partition

    rec = georef_model(root).require().reconstruction()
    cams = load_cameras(rec, root)
    train, held = split_views(cams, config.holdout_every)
    frames: dict[str, list[np.ndarray]] = {}
    for c in cams:
        frames.setdefault(frame_of(c.name), []).append(c.camera.centre)
    ids = sorted(frames)
    if len(ids) < config.blocks:
        raise StageError(f"train: {config.blocks} blocks asked for, but the model has only "
                         f"{len(ids)} registered frames; lower train.blocks")
    centres = np.array([np.mean(frames[f], axis=0) for f in ids])
    part = make_partition(centres[:, :2], config.blocks, seed=config.seed)
    owner = part.owner(centres[:, :2])
    views, owned = [], []
    for b in range(part.k):
        inside = set(np.asarray(ids)[part.expanded(centres[:, :2], b)]) | {
            f for f, o in zip(ids, owner, strict=True) if o == b}
        names = sorted(c.name for c in cams if frame_of(c.name) in inside)
        if not names:
            raise StageError(f"train: block {b + 1} of {part.k} has no views")
        views.append(names)
        owned.append([f for f, o in zip(ids, owner, strict=True) if o == b])
    return BlockPlan(part, views, owned, [c.name for c in (held or train[:8])])


def block_points(plan: BlockPlan, block: int, xyz: np.ndarray, rgb: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The starting points of `block`: those of `xyz` ``[N, 3]`` (ENU metres) in its expanded
    cell, with their colours.

    Raises:
        StageError: no point falls in the block.
    """
    keep = plan.partition.expanded(xyz[:, :2], block)
    if not keep.any():
        raise StageError(f"train: block {block + 1} has no SfM points to start from")
    return xyz[keep], rgb[keep]


def _block_dir(root: Path, b: int) -> Path:
    return Path(root) / BLOCKS_REL / f"b{b + 1:02d}"


def _block_fingerprint(fingerprint: str, b: int, k: int) -> str:
    return f"{fingerprint}:block{b + 1}/{k}"


def train_block(root: Path, plan: BlockPlan, b: int, config: TrainConfig, fingerprint: str,
                out: Path, events: Emitter, device: Any, stop_at: int | None = None) -> bool:
    """Train block `b` in session folder `out` (resuming its checkpoint there) up to
    `stop_at` steps (None: all). Returns True when its steps are done and ``out/splat.ply``
    is written, else False (a checkpoint at `stop_at` is saved)."""
    from ..splats.io import save_splats
    from ..train.model import to_splats

    if config.preview_view and config.preview_view not in plan.views[b]:
        config = dataclasses.replace(config, preview_view="")  # another block's view
    inputs = load_inputs(root, config, events, set(plan.views[b]))
    pts = block_points(plan, b, inputs.points, inputs.colors)
    label = f"block {b + 1}/{plan.partition.k}"
    session = make_session(out, inputs, config, _block_fingerprint(fingerprint, b,
                                                                    plan.partition.k),
                           events, device, label=label, points=pts)
    session.resume()
    session.start()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    while session.trainer.step < end:
        session.step()
    if session.trainer.step < config.steps:
        session.save_checkpoint()
        return False
    session.finish()
    save_splats(to_splats(session.trainer.splats), out / "splat.ply")
    return True


def merge_blocks(root: Path, plan: BlockPlan) -> tuple[Any, list[int]]:
    """(the merged :class:`~splatstudio.splats.model.Splats`, Gaussians kept per block): each
    block's ``splat.ply`` cut to the Gaussians whose mean it owns.

    Raises:
        StageError: a block has no ``splat.ply`` yet.
    """
    from ..splats.io import load_splats
    from ..splats.model import Splats

    parts = []
    for b in range(plan.partition.k):
        p = _block_dir(root, b) / "splat.ply"
        if not p.exists():
            raise StageError(f"train: block {b + 1} has no {p.name} yet")
        s = load_splats(p)
        parts.append(s.subset(plan.partition.owner(np.asarray(s.means)[:, :2]) == b))
    return Splats.concat(parts), [len(s) for s in parts]


def run_blocks(project: Project, config: TrainConfig, events: Emitter) -> dict[str, Any]:
    """The train stage with ``config.blocks`` > 1: plan, train every block (on the farm when
    one is on, else here), merge into ``train/splat.ply`` and evaluate the merged splat on all
    held-out views; ``train/metrics.json`` holds the merged evaluation and each block's.

    Raises:
        as :func:`splatstudio.pipeline.train.run_train`.
    """
    import torch

    from ..farm.host import farm_from_env
    from ..splats.io import save_splats
    from ..train.model import from_splats
    from ..train.trainer import evaluate_gaussians

    root, out = project.root, project.stage_dir("train")
    fingerprint = project.fingerprints()["train"]
    plan = plan_blocks(root, config)
    k = plan.partition.k
    write_json_atomic(root / BLOCKS_REL / "plan.json", {**plan.to_dict(),
                                                        "fingerprint": fingerprint})
    events.log(f"train: {k} blocks of " + " + ".join(str(len(v)) for v in plan.views)
               + f" views (expanded cells overlap by {plan.partition.margin_m:.1f} m)")
    farm = farm_from_env()
    dev = torch.device("cpu") if farm is not None else resolve_device(events)
    if farm is not None:
        _run_on_farm(project, plan, config, fingerprint, events, farm)
    else:
        for b in range(k):
            if (_block_dir(root, b) / "splat.ply").exists() and _block_done(root, b, fingerprint,
                                                                             k, config):
                events.log(f"train: block {b + 1}/{k} already trained")
                continue
            sub = _span(events, b, k)
            train_block(root, plan, b, config, fingerprint, _block_dir(root, b), sub, dev)
    merged, kept = merge_blocks(root, plan)
    save_splats(merged, out / "splat.ply")
    events.progress(0.985, "evaluating the merged splat")
    inputs = load_inputs(root, config, events, set(plan.evaluation))
    bg = torch.zeros(3, device=dev)
    params = from_splats(merged, dev)
    held = inputs.eval_views or inputs.train_views
    final = evaluate_gaussians(params, held, config.sh_degree, bg)
    per_block = []
    for b in range(k):
        evals = read_json(_block_dir(root, b) / "metrics.json").get("evals", [])
        last = evals[-1] if evals else {}
        per_block.append({"block": b + 1, "views": len(plan.views[b]),
                          "owned_frames": len(plan.owned_frames[b]),
                          "psnr": last.get("psnr"), "ssim": last.get("ssim"),
                          "gaussians_trained": last.get("gaussians"),
                          "gaussians_kept": kept[b],
                          "seconds": last.get("seconds")})
    entry = {"step": config.steps, "psnr": round(final["psnr"], 4),
             "ssim": round(final["ssim"], 5), "gaussians": len(merged),
             "views": len(held), "held_out": bool(inputs.eval_views), "merged": True}
    write_json_atomic(out / "metrics.json", {"device": str(dev), "evals": [entry],
                                             "blocks": per_block,
                                             "config": dataclasses.asdict(config)})
    events.metric("psnr", entry["psnr"], step=config.steps)
    events.metric("ssim", entry["ssim"], step=config.steps)
    for a in ("train/splat.ply", "train/metrics.json", BLOCKS_REL):
        events.artifact(a)
    seconds = sum(p["seconds"] or 0.0 for p in per_block)
    events.metric("gaussians", len(merged), step=config.steps)
    events.progress(1.0, f"done: {entry['psnr']:.2f} dB held-out PSNR (merged {k} blocks), "
                         f"{len(merged)} Gaussians")
    return {"psnr": entry["psnr"], "ssim": entry["ssim"], "psnr_step0": math.nan,
            "gaussians": len(merged), "steps": config.steps, "seconds": round(seconds, 3),
            "blocks": k}


def _block_done(root: Path, b: int, fingerprint: str, k: int, config: TrainConfig) -> bool:
    """True when block `b`'s checkpoint is of this fingerprint and at the last step."""
    p = _block_dir(root, b) / "checkpoints" / "latest.json"
    try:
        meta = read_json(p)
    except Exception:  # noqa: BLE001 - absent or broken: not done
        return False
    return (meta.get("fingerprint") == _block_fingerprint(fingerprint, b, k)
            and int(meta.get("step", -1)) >= config.steps)


class _SubEmitter:
    """`events` with progress mapped into a block's share of the stage (0.02-0.98)."""

    def __init__(self, events: Emitter, lo: float, hi: float, label: str):
        self._e, self._lo, self._hi, self._label = events, lo, hi, label

    def progress(self, fraction: float, message: str = "") -> None:
        self._e.progress(self._lo + (self._hi - self._lo) * fraction, f"{self._label}: {message}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._e, name)


def _span(events: Emitter, b: int, k: int) -> Any:
    lo = 0.02 + 0.95 * b / k
    return _SubEmitter(events, lo, lo + 0.95 / k, f"block {b + 1}/{k}")


# ---------------------------------------------------------------------------------------------
# The farm
# ---------------------------------------------------------------------------------------------
SESSION_FILES = ("metrics.json", "curve.jsonl", "preview.png", "splat.ply")
"""What a segment returns besides its checkpoint."""


def train_block_item(spec: dict[str, Any], in_dir: Path, out_dir: Path, events: Emitter) -> None:
    """Farm item (:mod:`splatstudio.farm`): one segment of a block's training.

    Args:
        spec: ``{"block": index, "plan": BlockPlan.to_dict(), "config": TrainConfig as a
            dict, "fingerprint": the train stage's, "stop_at": last step of the segment}``.
        in_dir: the block's images and masks, the georeferenced model and the block's
            session folder (its last shipped checkpoint) at their project paths.
        out_dir: gets the block's session files (``checkpoints/`` with the new checkpoint
            only, metrics.json, curve.jsonl, preview.png, and splat.ply when done).
    """
    from ..farm.partition import Partition

    config = update_config(TrainConfig(), spec["config"])
    p = spec["plan"]
    part = Partition(np.asarray(p["centroids"], np.float64), np.asarray(p["weights"], np.float64),
                     float(p["margin_m"]), np.zeros(0, np.int64))
    plan = BlockPlan(part, [b["views"] for b in p["blocks"]],
                     [b["owned_frames"] for b in p["blocks"]])
    b = int(spec["block"])
    shipped = _block_dir(in_dir, b)
    if shipped.exists():
        shutil.copytree(shipped, out_dir, dirs_exist_ok=True)
    device = resolve_device(events)
    train_block(in_dir, plan, b, config, spec["fingerprint"], out_dir, events, device,
                stop_at=int(spec["stop_at"]))
    ck = out_dir / "checkpoints"
    latest = json.loads((ck / "latest.json").read_text())
    for old in ck.glob("ckpt_*.pt"):  # ship only the newest (the project keeps its previous)
        if old.name != latest["file"]:
            old.unlink()
    latest["previous"] = None
    (ck / "latest.json").write_text(json.dumps(latest))


def _block_inputs(root: Path, plan: BlockPlan, b: int) -> dict[str, str]:
    """Project files block `b`'s segment reads -> SHA-256: the georeferenced model, its
    views' images and masks, and the block's shipped session files."""
    from ..farm.items import sha256_file

    files = [p for p in georef_model(root).path.rglob("*") if p.is_file()]
    for name in plan.views[b]:
        img, mask = image_paths(name, root)
        files += [root / img] + ([root / mask] if mask is not None else [])
    d = _block_dir(root, b)
    ck = d / "checkpoints"
    if (ck / "latest.json").exists():
        latest = read_json(ck / "latest.json")
        files += [ck / "latest.json", ck / latest["file"]]
        files += [d / f for f in SESSION_FILES[:3] if (d / f).exists()]
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(set(files))}


def _run_on_farm(project: Project, plan: BlockPlan, config: TrainConfig, fingerprint: str,
                 events: Emitter, farm: Any) -> None:
    """Train every block on the farm, in rounds of one segment per unfinished block."""
    import time

    from ..farm.dispatch import Dispatcher
    from ..farm.host import check_versions, connect
    from ..farm.items import WorkItem

    root, k = project.root, plan.partition.k
    seg = max(1, config.checkpoint_every or config.steps)
    cfg = config_to_dict(config)
    client = connect(*farm)
    t0 = time.monotonic()
    rounds = 0
    done_before = len(list((root / BLOCKS_REL / "farm").glob("round*.json")))
    try:
        check_versions(client)
        while True:
            items = []
            for b in range(k):
                step = _shipped_step(root, b, fingerprint, k)
                if step >= config.steps and (_block_dir(root, b) / "splat.ply").exists():
                    continue
                stop = min(config.steps, (step // seg + 1) * seg)
                items.append(WorkItem(
                    "train_block", f"block{b + 1:02d}-to{stop:07d}",
                    {"block": b, "plan": plan.to_dict(), "config": cfg,
                     "fingerprint": fingerprint, "stop_at": stop},
                    inputs=_block_inputs(root, plan, b), resources={"TRAIN": 1},
                    cost=stop - step))
            if not items:
                break
            rounds += 1
            dispatcher = Dispatcher(client, root, events, progress_span=(0.02, 0.97),
                                    record=root / BLOCKS_REL / "farm" /
                                    f"round{done_before + rounds:03d}.json")
            dispatcher.run(items, lambda it, files: _write_segment(root, it, files))
        events.log(f"farm: {k} blocks in {rounds} rounds ({time.monotonic() - t0:.1f} s)")
    finally:
        client.close()


def _shipped_step(root: Path, b: int, fingerprint: str, k: int) -> int:
    """The step of block `b`'s last shipped checkpoint of this fingerprint (0: none)."""
    try:
        meta = read_json(_block_dir(root, b) / "checkpoints" / "latest.json")
    except Exception:  # noqa: BLE001 - absent or broken: start over
        return 0
    if meta.get("fingerprint") != _block_fingerprint(fingerprint, b, k):
        return 0
    return int(meta.get("step", 0))


def _write_segment(root: Path, item: Any, files: dict[str, bytes]) -> None:
    """Write a segment's verified outputs into the block's folder: the new checkpoint first,
    then ``latest.json`` naming it (the previous one kept as ``previous``), then the session
    files, so a crash between writes leaves a resumable folder."""
    import os

    from ..events import null_emitter
    from .train_session import CheckpointStore

    d = _block_dir(root, int(item.spec["block"]))
    latest = json.loads(files["checkpoints/latest.json"])
    store = CheckpointStore(d / "checkpoints", latest["fingerprint"], null_emitter("train"))
    store.read()
    store.folder.mkdir(parents=True, exist_ok=True)
    name = latest["file"]
    tmp = store.folder / f".{name}.tmp"
    tmp.write_bytes(files[f"checkpoints/{name}"])
    os.replace(tmp, store.folder / name)
    store.record(latest)
    for rel in SESSION_FILES:
        if rel in files:
            tmp = d / f".{rel}.tmp"
            tmp.write_bytes(files[rel])
            os.replace(tmp, d / rel)
