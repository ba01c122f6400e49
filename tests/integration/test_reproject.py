"""Reproject on the real captures: views, EXIF, rig.json, masks, resume, invalidation."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from splatstudio.config import ProjectConfig, update_config
from splatstudio.geo.exif import parse_exif, read_image_header
from splatstudio.pano.equirect import equirect_to_ray
from splatstudio.pipeline.runner import PipelineRunner
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.slow


def _run(tmp_path, src, preset="test", **reproject):
    cfg = ProjectConfig.from_preset(preset)
    cfg.reproject = update_config(cfg.reproject, reproject)
    project = Project.create(tmp_path / "proj", src, cfg)
    result = PipelineRunner(project).run(until="reproject")
    assert result.ok, result.reason
    return project


def test_panoramas_to_views(tmp_path, panos_2048):
    project = _run(tmp_path, panos_2048)
    out = project.root / "reproject"
    rig = json.loads((out / "rig.json").read_text())
    frames = json.loads((out / "frames.json").read_text())["frames"]
    assert len(rig["views"]) == 18 and len(frames) == 5
    v = rig["views"][7]
    assert v["camera"]["model"] == "PINHOLE" and v["camera"]["width"] == 512
    assert v["camera"]["params"] == pytest.approx([256, 256, 256, 256])  # 90 deg
    r = np.array(v["cam_from_rig"]["rotation_matrix"])
    assert np.allclose(r @ r.T, np.eye(3))
    assert np.allclose(r.T[:, 2], [np.sin(np.radians(v["yaw_deg"])), 0, np.cos(np.radians(v["yaw_deg"]))])

    manifest = json.loads((project.root / "ingest" / "manifest.json").read_text())
    for frame, entry in zip(frames, manifest["images"], strict=True):
        assert frame["id"] == entry["id"] and len(frame["images"]) == 18
        first = out / frame["images"][0]
        h = read_image_header(first)
        assert (h.width, h.height) == (512, 512)
        gps = parse_exif(h.exif).gps  # GPS copied into every view
        assert gps["lat_deg"] == pytest.approx(entry["gps"]["lat_deg"], abs=1e-7)
        assert gps["lon_deg"] == pytest.approx(entry["gps"]["lon_deg"], abs=1e-7)
        assert gps["h_m"] == pytest.approx(entry["gps"]["h_m"], abs=1e-3)
    for view in rig["views"]:
        for kind in ("ownership", "nadir"):
            m = cv2.imread(str(out / view["masks"][kind]), cv2.IMREAD_UNCHANGED)
            assert m.shape == (512, 512) and set(np.unique(m)) <= {0, 255}
    # the lower ring looks down at the operator: mostly masked; the horizon ring not at all
    low = cv2.imread(str(out / "masks/00.nadir.png"), 0)
    mid = cv2.imread(str(out / "masks/06.nadir.png"), 0)
    assert (low == 0).mean() > 0.3 and (mid == 0).mean() == 0


def test_view_content_matches_the_panorama(tmp_path, panos_2048):
    """The centre pixel of the forward view equals the centre of the panorama."""
    project = _run(tmp_path, panos_2048, rig="cube6", jpeg_quality=100)
    pano = cv2.imread(str(panos_2048 / "3.jpg")).astype(float)
    view = cv2.imread(str(project.root / "reproject/views/3/00.jpg")).astype(float)
    s = view.shape[0]
    centre = view[s // 2 - 3 : s // 2 + 3, s // 2 - 3 : s // 2 + 3].mean((0, 1))
    h, w = pano.shape[:2]
    pc = pano[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3].mean((0, 1))
    assert np.abs(centre - pc).max() < 12
    # The "up" face (view 04) is the top of the panorama.
    up = cv2.imread(str(project.root / "reproject/views/3/04.jpg")).astype(float)
    assert np.allclose(equirect_to_ray(w / 2, 0.5, w, h), [0, -1, 0], atol=0.01)
    assert np.abs(up[s // 2, s // 2] - pano[0, w // 2]).max() < 40


def test_resume_and_invalidation(tmp_path, panos_2048):
    project = _run(tmp_path, panos_2048)
    views = project.root / "reproject" / "views"
    mtime = (views / "1" / "00.jpg").stat().st_mtime_ns
    # a panorama whose folder is gone (a killed run) is redone, the others kept
    import shutil

    shutil.rmtree(views / "4")
    PipelineRunner(project).run(until="reproject", force=True)
    st = project.read_status("reproject")
    assert st.metrics["rendered"] == 1 and (views / "4" / "17.jpg").exists()
    assert (views / "1" / "00.jpg").stat().st_mtime_ns == mtime
    # a changed option re-renders everything
    project.config.reproject = update_config(project.config.reproject, {"fov_deg": 100})
    project.save()
    result = PipelineRunner(project).run(until="reproject")
    assert result.states == {"ingest": StageState.SKIPPED, "reproject": StageState.DONE}
    assert project.read_status("reproject").metrics["rendered"] == 5
    rig = json.loads((project.root / "reproject" / "rig.json").read_text())
    assert rig["views"][0]["fov_deg"] == 100


def test_photos_pass_through(tmp_path, lund):
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for name in ("01.jpg", "02.jpg", "03.jpg"):
        shutil.copy2(lund / name, src / name)
    project = _run(tmp_path, src)
    frames = json.loads((project.root / "reproject" / "frames.json").read_text())["frames"]
    assert [f["kind"] for f in frames] == ["perspective"] * 3
    f = frames[0]
    assert (project.root / "reproject" / f["images"][0]).read_bytes() == (src / "01.jpg").read_bytes()
    assert f["camera"]["params"][0] == pytest.approx(35 / 36 * 1024)
    assert f["camera"]["focal_source"] == "exif"
    assert not (project.root / "reproject" / "rig.json").exists()


def test_sfm_rig_views_masks_resume_and_removal(tmp_path, panos_2048):
    from splatstudio.pano.rig import View
    from splatstudio.pipeline.reproject import platform_view

    project = _run(tmp_path, panos_2048)
    out = project.root / "reproject"
    marker = (out / "views" / "1" / "view_set.json").stat().st_mtime_ns
    project.config.reproject = update_config(project.config.reproject,
                                             {"sfm_rig": "cube6", "sfm_size": 256})
    project.save()
    assert PipelineRunner(project).run(until="reproject").ok
    # the training views were done: only SfM's own views are rendered
    assert (out / "views" / "1" / "view_set.json").stat().st_mtime_ns == marker
    data = json.loads((out / "frames.json").read_text())
    assert data["sfm_rig"] == "sfm_rig.json"
    sfm_rig = json.loads((out / "sfm_rig.json").read_text())
    # the face looking down is 79 % inside the 45 deg nadir mask (pi / 4 of it): left out
    assert [v["name"] for v in sfm_rig["views"]] == [f"s{i:02d}" for i in range(5)]
    assert not list((out / "masks").glob("s05.*"))
    assert sfm_rig["native_size"] == 512 and sfm_rig["views"][0]["camera"]["width"] == 256
    for f in data["frames"]:
        assert len(f["images"]) == 18 and len(f["sfm_images"]) == 5
        for rel in f["sfm_images"]:
            h = read_image_header(out / rel)
            assert (h.width, h.height) == (256, 256)
            assert parse_exif(h.exif).gps is not None  # the panorama's GPS, as for training
    # keep = nadir AND the platform mask (with partial panoramas: AND their coverage) seen
    # by the view, the same equirect mask the training views' keep masks come from
    platform = cv2.imread(str(out / "platform_mask.png"), 0)
    for v in sfm_rig["views"]:
        keep = cv2.imread(str(out / v["masks"]["keep"]), 0)
        nadir = cv2.imread(str(out / v["masks"]["nadir"]), 0)
        own = cv2.imread(str(out / v["masks"]["ownership"]), 0)
        view = View(v["name"], v["yaw_deg"], v["pitch_deg"], v["fov_deg"], 256)
        assert np.array_equal(keep, np.minimum(nadir, platform_view(platform, view)))
        assert (own == 255).all()  # cube faces do not overlap: each owns all its pixels
    up = cv2.imread(str(out / "masks" / "s04.keep.png"), 0)  # the face looking up: kept
    assert (up == 0).mean() < 0.1  # (the platform mask takes 3 % of it on this walk)
    # with the nadir mask off, the face looking down stays
    project.config.reproject = update_config(project.config.reproject, {"nadir_mask": False})
    project.save()
    assert PipelineRunner(project).run(until="reproject").ok
    assert len(json.loads((out / "sfm_rig.json").read_text())["views"]) == 6
    # back to SfM on the training views: SfM's own rig is removed
    project.config.reproject = update_config(project.config.reproject, {"sfm_rig": "training"})
    project.save()
    assert PipelineRunner(project).run(until="reproject").ok
    assert not (out / "sfm_rig.json").exists() and not (out / "sfm_views").exists()
    assert not list((out / "masks").glob("s*.png"))
    assert "sfm_rig" not in json.loads((out / "frames.json").read_text())
