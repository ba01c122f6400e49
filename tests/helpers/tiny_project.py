"""A tiny synthetic project whose ingest..georef stages are already done, for fast train and
export runs through the real runner (seconds, not the minute the real captures take).

The scene: a few hundred coloured Gaussians around the ENU origin (metres, z up), seen by a ring
of pinhole cameras looking at it; the views are rendered by our CPU rasterizer and stored as
perspective photos (``reproject/photos/vNN.jpg``, no masks). ``georef/sparse`` is a COLMAP text
model (cameras, images with ``cam_from_world`` poses, points3D = noisy Gaussian centres).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from splatstudio.config import ProjectConfig, update_config
from splatstudio.project import Project, now_iso, write_json_atomic
from splatstudio.quaternion import rotmat_to_quat
from splatstudio.status import StageState, StageStatus

ORIGIN = {"lat_deg": 55.7047, "lon_deg": 13.1910, "h_m": 73.25}


def mark_done(project: Project, stages: list[str]) -> None:
    """Write a ``done`` status with the current fingerprint for each of `stages`."""
    fps = project.fingerprints()
    for s in stages:
        now = now_iso()
        project.write_status(StageStatus(s, StageState.DONE, started=now, finished=now,
                                         seconds=0.0, fingerprint=fps[s]))


def splat_project(root: Path, splat: Path) -> Project:
    """A project at `root` (default config, its input folder ``input`` beside it) holding a
    copy of the splat file `splat` as ``train/splat.ply``, and an ingest manifest with the GPS
    origin `ORIGIN` (no images). No stage status is written: see `mark_done`."""
    root = Path(root)
    (root.parent / "input").mkdir()
    project = Project.create(root, root.parent / "input")
    (project.root / "train").mkdir()
    shutil.copy(splat, project.root / "train" / "splat.ply")
    write_json_atomic(project.root / "ingest" / "manifest.json", {"origin": ORIGIN, "images": []})
    return project


def tiny_georef_project(root: Path, *, views: int = 8, size: tuple[int, int] = (64, 48),
                        gaussians: int = 300, **train: object) -> Project:
    """A project at `root` (its input folder beside it) with ingest..georef done.

    Args:
        views: cameras on the ring; size: their (width, height) in pixels.
        gaussians: Gaussians of the synthetic scene (and 3D points of the model).
        train: TrainConfig options on top of the ``test`` preset (e.g. ``steps=200``).
    """
    import torch

    from splatstudio.render import look_at, rasterize

    root = Path(root)
    inp = root.parent / f"{root.name}-input"
    inp.mkdir(parents=True, exist_ok=True)
    cfg = ProjectConfig.from_preset("test")
    cfg.train = update_config(cfg.train, {"downscale": 1.0, "allow_slow": True, **train})
    project = Project.create(root, inp, cfg)

    g = torch.Generator().manual_seed(0)
    means = (torch.rand(gaussians, 3, generator=g) - 0.5) * torch.tensor([2.0, 2.0, 1.0])
    quats = torch.randn(gaussians, 4, generator=g)
    scales = torch.full((gaussians, 3), 0.08)
    opac = torch.full((gaussians,), 0.9)
    colors = torch.rand(gaussians, 3, generator=g)
    w, h = size
    f = 0.8 * w
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])

    import cv2

    photos = root / "reproject" / "photos"
    photos.mkdir(parents=True)
    sparse = root / "georef" / "sparse"
    sparse.mkdir(parents=True)
    lines = []
    for i in range(views):
        a = 2 * math.pi * i / views
        eye = np.array([3.0 * math.cos(a), 3.0 * math.sin(a), 1.2])
        vm = np.asarray(look_at(eye, np.zeros(3), (0.0, 0.0, 1.0)), np.float64)
        with torch.no_grad():
            img, _, _ = rasterize(means, quats, scales, opac, colors,
                                  torch.from_numpy(vm).float()[None],
                                  torch.from_numpy(K).float()[None], w, h)
        rgb = (img[0].clamp(0, 1) * 255).round().byte().numpy()
        name = f"v{i:02d}.jpg"
        cv2.imwrite(str(photos / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        q = rotmat_to_quat(vm[:3, :3])
        t = vm[:3, 3]
        lines.append(f"{i + 1} {' '.join(f'{v:.12g}' for v in q)} "
                     f"{' '.join(f'{v:.12g}' for v in t)} 1 photos/{name}\n\n")
    (sparse / "cameras.txt").write_text(f"1 PINHOLE {w} {h} {f} {f} {w / 2} {h / 2}\n")
    (sparse / "images.txt").write_text("".join(lines))
    rng = np.random.default_rng(1)
    pts = means.numpy() + rng.normal(scale=0.03, size=(gaussians, 3))
    cols = (colors.numpy() * 255).astype(int)
    (sparse / "points3D.txt").write_text("".join(
        f"{j + 1} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {c[0]} {c[1]} {c[2]} 0\n"
        for j, (p, c) in enumerate(zip(pts, cols, strict=True))
    ))
    write_json_atomic(root / "ingest" / "manifest.json", {"origin": ORIGIN, "images": []})
    mark_done(project, ["ingest", "reproject", "sfm", "georef"])
    return project
