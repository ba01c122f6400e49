"""The CPU training workload of issue 16, shared by the CPU training benchmarks.

The COLMAP model of the real 2048 GoPro MAX walk (``../shared/data/panos/geovisio-gopromax-2048``,
``test`` preset through georef: 5 panoramas x 18 views of 512x512 px = 90 views), trained at full
view size (no downscale) from ``n`` initial points: the model's SfM points, resampled with
replacement and jittered by a Gaussian of ``JITTER`` (1 %) of their distance to the nearest camera
(seeded: a few pixels in the views), so 10k / 100k / 300k starts exist although SfM triangulates
only ~900 points here. The same points go to
OpenSplat through a COLMAP ``points3D.bin`` (:func:`write_opensplat_dataset`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from _common import DATA

JITTER = 0.01
"""Standard deviation of the jitter of repeated points, a fraction of their camera distance."""

SRC = DATA / "panos" / "geovisio-gopromax-2048"


def georef_project(work: Path) -> Path:
    """A project of the 2048 walk (test preset) through georef in ``work/base``; reused when
    ``work/base/georef/sparse`` exists. Returns the project folder.

    Raises:
        SystemExit: the pipeline did not reach georef.
    """
    from splatstudio.config import ProjectConfig
    from splatstudio.pipeline.runner import PipelineRunner
    from splatstudio.project import Project

    base = work / "base"
    if (base / "georef" / "sparse" / "images.bin").exists():
        return base
    shutil.rmtree(base, ignore_errors=True)
    project = Project.create(base, SRC, ProjectConfig.from_preset("test"))
    result = PipelineRunner(project, device="cpu").run(until="georef")
    if not result.ok:
        raise SystemExit(f"the project did not reach georef: {result.reason}")
    return project.root


def initial_points(project: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [n, 3] float64 ENU metres, rgb [n, 3] uint8): the model's points resampled to `n`
    (all of them first, then random repeats, jittered; see the module docstring)."""
    import pycolmap
    from scipy.spatial import cKDTree

    from splatstudio.pipeline.train import load_points

    rec = pycolmap.Reconstruction(str(project / "georef" / "sparse"))
    xyz, rgb = load_points(rec)
    rng = np.random.default_rng(seed)
    if n <= len(xyz):
        keep = np.sort(rng.choice(len(xyz), n, replace=False))
        return xyz[keep], rgb[keep]
    cams = camera_centres(project)
    depth, _ = cKDTree(cams).query(xyz, k=1)
    extra = rng.integers(0, len(xyz), n - len(xyz))
    jitter = rng.normal(0.0, 1.0, (len(extra), 3)) * (JITTER * depth[extra])[:, None]
    return np.concatenate([xyz, xyz[extra] + jitter]), np.concatenate([rgb, rgb[extra]])


def camera_centres(project: Path) -> np.ndarray:
    """[M, 3] camera centres (ENU metres) of the registered images of ``georef/sparse``."""
    import pycolmap

    rec = pycolmap.Reconstruction(str(project / "georef" / "sparse"))
    return np.array([im.projection_center() for im in rec.images.values() if im.has_pose])


def load_views(project: Path, downscale: float = 1.0, holdout_every: int = 8):
    """(train views, held-out views) of the project (TrainView lists, as the train stage)."""
    import pycolmap

    from splatstudio.pipeline.train import load_cameras, load_view, split_views

    rec = pycolmap.Reconstruction(str(project / "georef" / "sparse"))
    tr, ev = split_views(load_cameras(rec, project), holdout_every)
    return ([load_view(project, c, downscale) for c in tr],
            [load_view(project, c, downscale) for c in ev])


def flat_name(colmap_name: str) -> str:
    """``<view>/<pano>.jpg`` -> ``<view>_<pano>.jpg`` (OpenSplat matches images by file name)."""
    return colmap_name.replace("/", "_")


def write_opensplat_dataset(project: Path, xyz: np.ndarray, rgb: np.ndarray, out: Path) -> Path:
    """An OpenSplat COLMAP folder ``out/{sparse/0/*.bin, images/*}`` of the project's model:
    cameras and poses of ``georef/sparse`` with the images under flat names
    (:func:`flat_name`), and `xyz`, `rgb` as its only 3D points. No masks are written (the
    timing runs of both trainers use unmasked views). Returns `out`."""
    import pycolmap

    from splatstudio.pipeline.train import image_paths

    rec = pycolmap.Reconstruction(str(project / "georef" / "sparse"))
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for pid in list(rec.points3D.keys()):
        rec.delete_point3D(pid)
    for im in rec.images.values():
        if not im.has_pose:
            continue
        shutil.copyfile(project / image_paths(im.name)[0], img_dir / flat_name(im.name))
        im.name = flat_name(im.name)
    for p, c in zip(xyz, rgb, strict=True):
        rec.add_point3D(np.asarray(p, np.float64), pycolmap.Track(), np.asarray(c, np.uint8))
    sp = out / "sparse" / "0"
    sp.mkdir(parents=True, exist_ok=True)
    rec.write_binary(str(sp))
    return out
