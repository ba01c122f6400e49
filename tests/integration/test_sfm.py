"""sfm + georef on the real captures: registration, GPS residuals, outputs, resume, failures."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from splatstudio.config import ProjectConfig, update_config
from splatstudio.pipeline.runner import PipelineRunner
from splatstudio.project import Project

pycolmap = pytest.importorskip("pycolmap")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def panos_project(tmp_path_factory, panos_2048):
    root = tmp_path_factory.mktemp("sfm") / "proj"
    project = Project.create(root, panos_2048, ProjectConfig.from_preset("test"))
    t0 = time.monotonic()
    result = PipelineRunner(project).run(until="georef")
    project.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    assert result.ok, result.reason
    return project


def _status(project, stage):
    return json.loads((project.root / stage / "status.json").read_text())


def test_panoramas_register_and_match_gps(panos_project):
    sfm = _status(panos_project, "sfm")["metrics"]
    geo = json.loads((panos_project.root / "georef" / "georef.json").read_text())
    # The targets: >= 90 % of views, RMS <= 1.0 m. With the global mapper: 90/90 views,
    # RMS 0.89-0.91 m over 12 fresh runs here (0.94 m once before) and 0.91 m on the CI machine.
    assert sfm["registered_fraction"] >= 0.9
    assert sfm["models"] == 1
    assert sfm["pairs"] == 10 * 18 * 18  # 5 panoramas, all pano pairs, 18 x 18 views each
    assert sfm["mean_reprojection_error_px"] < 2.0 and sfm["points3D"] > 300
    assert geo["status"] == "georeferenced"
    assert geo["rms_residual_m"] <= 1.0
    # horizontal and vertical parts are reported; they make up the 3D RMS
    assert geo["rms_horizontal_m"] ** 2 + geo["rms_vertical_m"] ** 2 == pytest.approx(
        geo["rms_residual_m"] ** 2, rel=1e-6)
    # Consecutive panorama distances vs the GPS steps (target: within 20 %). The first step is
    # not held as truth: SfM puts panoramas 1 and 2 ~2 m apart where the GPS says 1.05 m, and
    # COLMAP's own panorama pipeline (other views, exhaustive matching, full resolution too)
    # agrees with us (an even ~2.4 m pace every 2 s). Panorama 3 has two places along the
    # straight walk, 0.6 m apart: 11 of 12 fresh runs here gave steps 2-4 at -17/-9/+3 % (to
    # 1 cm); one run here and the CI machine's gave +3/-27/+13 % and +3/-27/+6 % (thread timing
    # and CPU round-off decide). So single steps get 35 % (a collapse like the incremental
    # mapper's 0.40/5.90 m fails it), and the distances over two or more steps, which that
    # slide changes less, the 20 % (measured -13/-3/-8 % and -13/-11/-5 %).
    ids = sorted(geo["frames"], key=int)
    sfm_xyz = np.array([geo["frames"][i]["sfm_enu_m"] for i in ids])
    gps_xyz = np.array([geo["frames"][i]["gps_enu_m"] for i in ids])
    sfm_steps = np.linalg.norm(np.diff(sfm_xyz, axis=0), axis=1)
    gps_steps = np.linalg.norm(np.diff(gps_xyz, axis=0), axis=1)
    rel = (sfm_steps - gps_steps) / gps_steps
    print(f"\nsteps sfm {sfm_steps.round(2)} gps {gps_steps.round(2)}; RMS "
          f"{geo['rms_residual_m']:.2f} m; {sfm['registered_images']:.0f} views")
    assert np.all(np.abs(rel[1:]) <= 0.35), rel
    for a, b in [(1, 3), (2, 4), (1, 4)]:
        span = np.linalg.norm(sfm_xyz[b] - sfm_xyz[a])
        assert span == pytest.approx(np.linalg.norm(gps_xyz[b] - gps_xyz[a]), rel=0.2), (a, b)
    assert sfm_steps.sum() == pytest.approx(gps_steps.sum(), rel=0.2)
    # stages together under 2 minutes on 2 cores (generous: shared CI machines)
    assert _status(panos_project, "sfm")["seconds"] + _status(panos_project, "georef")[
        "seconds"] < 180


def test_outputs_are_readable(panos_project):
    geo_dir = panos_project.root / "georef"
    rec = pycolmap.Reconstruction(str(geo_dir / "sparse"))
    txt = pycolmap.Reconstruction(str(geo_dir / "sparse_text"))
    assert rec.num_reg_images() == txt.num_reg_images() > 0
    assert rec.num_rigs() == 1 and rec.num_frames() == 5
    tr = json.loads((geo_dir / "transforms.json").read_text())
    assert len(tr["frames"]) == rec.num_reg_images()
    f0 = tr["frames"][0]
    assert (geo_dir / f0["file_path"]).exists() and (geo_dir / f0["mask_path"]).exists()
    # camera centres in transforms.json are the georeferenced ones (metres, ENU)
    geo = json.loads((geo_dir / "georef.json").read_text())
    c = np.array(f0["transform_matrix"])[:3, 3]
    pano = f0["file_path"].split("/")[-2]
    assert np.allclose(c, geo["frames"][pano]["sfm_enu_m"], atol=1e-6)
    # Z up: the panoramas' up axis (-y of the rig frame) points up in ENU
    for im in rec.images.values():
        if im.name.startswith("06/"):  # a horizon view: its -y is up
            up = im.cam_from_world().rotation.matrix().T @ np.array([0, -1.0, 0])
            assert up[2] > 0.99


def test_resume_reuses_features_and_too_few_registered_fails(panos_project):
    sfm_dir = panos_project.root / "sfm"
    db_mtime = (sfm_dir / "database.db").stat().st_size
    cfg = panos_project.config
    cfg.sfm = update_config(cfg.sfm, {"min_registered_fraction": 1.01})
    panos_project.save()
    result = PipelineRunner(panos_project).run(["sfm"])
    assert not result.ok
    assert "registered" in result.reason and "Try" in result.reason
    st = _status(panos_project, "sfm")
    assert st["metrics"]["seconds_features"] < 5.0  # features came from the database
    assert (sfm_dir / "database.db").stat().st_size >= db_mtime
    assert (sfm_dir / "sparse" / "images.bin").exists()  # earlier model kept
    cfg.sfm = update_config(cfg.sfm, {"min_registered_fraction": 0.5})
    panos_project.save()


def test_global_mapper_without_a_model_falls_back_to_incremental(panos_project, monkeypatch):
    """COLMAP's global mapper sometimes builds nothing ("Global mapping failed"); the automatic
    mapper choice then maps incrementally instead of stopping."""
    from splatstudio.config import Mapper
    from splatstudio.events import Emitter
    from splatstudio.pipeline import sfm

    real = sfm.map_model
    tried: list[str] = []

    def global_fails(db, images, out, config, *args):
        tried.append(str(config.mapper))
        return {} if config.mapper == Mapper.GLOBAL else real(db, images, out, config, *args)

    monkeypatch.setattr(sfm, "map_model", global_fails)
    got: list = []
    shutil.rmtree(panos_project.root / "sfm" / "sparse", ignore_errors=True)
    sfm.run_sfm(panos_project, panos_project.config.sfm,
                Emitter("sfm", got.append, min_interval_s=0))
    report = json.loads((panos_project.root / "sfm" / "sfm.json").read_text())
    assert tried == ["global", "incremental"]
    assert report["mapper"] == "incremental" and report["registered_images"] >= 81
    assert report["gps_check"][0]["verdict"] == "no model"
    assert any("global mapper built no model" in getattr(e, "message", "") for e in got)


def test_lund_photos(tmp_path, lund):
    project = Project.create(tmp_path / "lund", lund, ProjectConfig.from_preset("test"))
    result = PipelineRunner(project).run(until="georef")
    assert result.ok, result.reason
    sfm = _status(project, "sfm")["metrics"]
    assert sfm["registered_images"] >= 27
    geo = json.loads((project.root / "georef" / "georef.json").read_text())
    assert geo["status"] == "georeferenced"
    assert np.isfinite(geo["rms_residual_all_m"])
    rec = pycolmap.Reconstruction(str(project.root / "georef" / "sparse"))
    assert rec.num_reg_images() == sfm["registered_images"]
