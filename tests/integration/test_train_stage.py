"""The train stage on the real panoramas (test preset, CPU): PSNR gain, outputs, cancel/kill and
resume from a checkpoint, the CPU time estimate, previews from a GUI camera."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from splatstudio.config import ProjectConfig, update_config
from splatstudio.errors import StageError
from splatstudio.events import Metric, null_emitter
from splatstudio.pipeline.runner import PipelineRunner, kill_process_tree
from splatstudio.project import Project
from splatstudio.status import StageState

pytest.importorskip("pycolmap")
pytest.importorskip("gsplat")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def georef_project(tmp_path_factory, panos_2048):
    """The 5 panoramas through ingest..georef with the test preset (about a minute)."""
    root = tmp_path_factory.mktemp("train") / "base"
    project = Project.create(root, panos_2048, ProjectConfig.from_preset("test"))
    result = PipelineRunner(project, device="cpu").run(until="georef")
    assert result.ok, result.reason
    return project


def _copy(project: Project, dst) -> Project:
    shutil.copytree(project.root, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return Project.open(dst)


def _status(project: Project) -> dict:
    return json.loads((project.root / "train" / "status.json").read_text())


def test_train_gains_psnr_and_resumes_after_cancel(georef_project, tmp_path):
    from splatstudio.splats.io import load_splats

    project = _copy(georef_project, tmp_path / "p")
    cfg = project.config.train
    assert cfg.steps == 300 and cfg.downscale == 2.0 and cfg.checkpoint_every == 100

    # 1) cancel part-way: the stage saves a checkpoint at the step it stopped at
    runner = PipelineRunner(project, device="cpu")
    seen: list[int] = []

    def on_event(e):
        if isinstance(e, Metric) and e.name == "loss" and e.step is not None:
            seen.append(e.step)
            if e.step >= 130:
                runner.cancel()

    runner.on_event = on_event
    t0 = time.monotonic()
    res = runner.run(until="train")
    assert res.states["train"] == StageState.CANCELLED, res.reason
    latest = json.loads((project.root / "train/checkpoints/latest.json").read_text())
    assert 130 <= latest["step"] < 300
    assert not (project.root / "train" / "splat.ply").exists()

    # 2) run again: resumes from that checkpoint and finishes
    resumed: list[float] = []
    events: list = []

    def on_event2(e):
        events.append(e)
        if isinstance(e, Metric) and e.name == "resumed_step":
            resumed.append(e.value)

    res = PipelineRunner(project, on_event2, device="cpu").run(until="train")
    wall = time.monotonic() - t0
    assert res.ok and res.states["train"] == StageState.DONE, res.reason
    assert resumed == [latest["step"]]
    m = _status(project)["metrics"]
    print(f"\ntrain test preset: PSNR {m['psnr_step0']:.2f} -> {m['psnr']:.2f} dB, "
          f"SSIM {m['ssim']:.3f}, {m['gaussians']:.0f} Gaussians, {m['steps']:.0f} steps, "
          f"{m['seconds']:.0f} s training, {wall:.0f} s wall (two runs)")
    assert m["steps"] == 300
    assert m["psnr"] >= m["psnr_step0"] + 3.0
    # Training time across both runs. Target: 3 minutes on 2 idle cores (measured ~35 s idle);
    # the bound is generous because shared CI machines run other CPU-heavy jobs beside it.
    assert m["seconds"] < 300

    # outputs
    out = project.root / "train"
    ev = json.loads((out / "metrics.json").read_text())["evals"]
    assert [e["step"] for e in ev] == list(range(0, 301, cfg.eval_every))  # the preset's 50
    assert ev[-1]["psnr"] == pytest.approx(m["psnr"]) and ev[-1]["held_out"]
    for key in ("ssim", "gaussians", "seconds", "peak_memory_mb"):
        assert key in ev[-1]
    # the curve: one line every metrics_every steps across both runs; the resume cut the lines
    # written after the checkpoint, so no step is written twice
    raw = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    every = cfg.metrics_every
    assert [p["step"] for p in raw] == list(range(every, 301, every))
    assert all(np.isfinite(p["loss"]) and p["gaussians"] > 0 for p in raw)
    splats = load_splats(out / "splat.ply")
    assert splats.n == m["gaussians"] and splats.sh_degree == 1
    assert np.isfinite(splats.means).all()
    # ENU metres: the Gaussians sit around the camera path (within a few hundred metres)
    assert np.median(np.linalg.norm(splats.means[:, :2], axis=1)) < 200
    assert (out / "preview.png").exists()
    arts = {a for e in events if e.kind == "artifact" for a in [e.path]}
    assert {"train/splat.ply", "train/metrics.json", "train/curve.jsonl",
            "train/checkpoints"} <= arts
    assert any(e.kind == "preview" for e in events)
    names = {e.name for e in events if isinstance(e, Metric)}
    assert {"loss", "gaussians", "steps_per_s", "memory_mb", "psnr", "ssim"} <= names

    # 3) done and unchanged: skipped
    res = PipelineRunner(project, device="cpu").run(until="train")
    assert res.states["train"] == StageState.SKIPPED

    # 4) `splatstudio render -p P --view NAME` renders the trained splat from a registered view:
    # it must look like that view's photo (same camera convention as training)
    import cv2

    from splatstudio.cli import main

    held_out = [e for e in ev if e["held_out"]][-1]
    png = tmp_path / "view.png"
    name = "00/3.jpg"
    assert main(["render", "-p", str(project.root), "--view", name, "-o", str(png),
                 "--device", "cpu"]) == 0
    got = cv2.imread(str(png))
    want = cv2.imread(str(project.root / "reproject/views/3/00.jpg"))
    assert got.shape == want.shape  # the view's own size by default
    mask = cv2.imread(str(project.root / "reproject/masks/00.nadir.png"), 0) > 127
    mse = np.mean((got.astype(float) - want.astype(float))[mask] ** 2)
    view_psnr = 10 * np.log10(255.0**2 / mse)
    print(f"render from view {name}: PSNR {view_psnr:.1f} dB vs its photo "
          f"(held-out mean {held_out['psnr']:.1f})")
    assert view_psnr > held_out["psnr"] - 3.0
    # a half-size render keeps the framing (intrinsics scaled with the size)
    assert main(["render", "-p", str(project.root), "--view", name, "-o", str(png),
                 "--width", str(got.shape[1] // 2)]) == 0
    assert cv2.imread(str(png)).shape[:2] == (got.shape[0] // 2, got.shape[1] // 2)

    # 5) `splatstudio render -p P --path capture -o fly.mp4`: a few frames of the walk's
    # fly-through along its smoothed capture path, read back
    import imageio.v2 as imageio

    mp4 = tmp_path / "fly.mp4"
    assert main(["render", "-p", str(project.root), "--path", "capture", "--frames", "4",
                 "--width", "128", "--height", "72", "--device", "cpu", "-o", str(mp4)]) == 0
    frames = [f for f in imageio.get_reader(str(mp4))]  # the reader has no finite len()
    assert len(frames) == 4 and frames[0].shape == (72, 128, 3)
    assert all(f.std() > 5 for f in frames)  # the street, not an empty frame


def test_kill_then_resume_from_periodic_checkpoint(georef_project, tmp_path):
    import cv2

    project = _copy(georef_project, tmp_path / "p")
    # a GUI-placed preview camera: 80x60 px looking along the first training view
    import pycolmap

    rec = pycolmap.Reconstruction(str(project.root / "georef" / "sparse"))
    im = sorted((i for i in rec.images.values() if i.has_pose), key=lambda i: i.name)[1]
    vm = np.eye(4)
    vm[:3] = np.asarray(im.cam_from_world().matrix())
    K = [[40.0, 0, 40], [0, 40.0, 30], [0, 0, 1]]
    (project.root / "train").mkdir(exist_ok=True)
    (project.root / "train" / "preview_camera.json").write_text(
        json.dumps({"viewmat": vm.tolist(), "K": K, "width": 80, "height": 60})
    )

    runner = PipelineRunner(project, device="cpu")
    killed: list[int] = []

    def on_event(e):
        if isinstance(e, Metric) and e.name == "loss" and e.step and e.step >= 110 and not killed:
            pid = project.read_status("train").pid
            killed.append(e.step)
            kill_process_tree(pid)

    runner.on_event = on_event
    res = runner.run(until="train")
    assert killed and res.states["train"] == StageState.FAILED
    assert "run again to resume" in res.reason
    img = cv2.imread(str(project.root / "train" / "preview.png"))
    assert img.shape == (60, 80, 3)

    resumed: list[float] = []
    runner = PipelineRunner(project, device="cpu")

    def on_event2(e):
        if isinstance(e, Metric) and e.name == "resumed_step":
            resumed.append(e.value)
            runner.cancel()

    runner.on_event = on_event2
    res = runner.run(until="train")
    assert res.states["train"] == StageState.CANCELLED
    # the last periodic checkpoint before the kill (every 100 steps)
    assert resumed and resumed[0] > 0 and resumed[0] % 100 == 0 and resumed[0] <= killed[0]


def test_cpu_estimate_refuses_a_heavy_preset(georef_project, tmp_path, monkeypatch):
    from splatstudio.pipeline.train import run_train

    monkeypatch.setenv("SPLATSTUDIO_DEVICE", "cpu")
    project = _copy(georef_project, tmp_path / "p")
    # quality's 30k steps at test's resolution: tens of minutes on 2 idle cores (fewer with the
    # global mapper's sparser points), 'test' under a minute: a 10-minute limit refuses it
    heavy = update_config(ProjectConfig.from_preset("quality").train,
                          {"downscale": 2.0, "sh_degree": 1, "cpu_limit_s": 600.0})
    with pytest.raises(StageError) as e:
        run_train(project, heavy, null_emitter("train"))
    msg = str(e.value)
    # which preset fits depends on the machine's load (the preset hint is unit-tested with a
    # fixed step time in tests/unit/test_train_session.py)
    assert "cpu_limit_s" in msg and "allow_slow" in msg, msg
    assert "the largest preset that fits is" in msg or "no preset fits" in msg, msg
    assert not (project.root / "train" / "splat.ply").exists()


def test_split_and_preview_camera_fallback(tmp_path):
    from splatstudio.pipeline.train import RegisteredView, preview_camera, split_views
    from splatstudio.render.camera import PinholeCamera

    cams = [RegisteredView(f"00/{i}.jpg", "", None, PinholeCamera(np.eye(4), np.eye(3), 4, 3))
            for i in range(17)]
    tr, ev = split_views(cams[::-1], 8)
    assert [c.name for c in ev] == ["00/0.jpg", "00/16.jpg", "00/9.jpg"]  # by sorted name
    assert len(tr) == 14 and not {c.name for c in tr} & {c.name for c in ev}
    tr, ev = split_views(cams, 0)
    assert len(tr) == 17 and ev == []

    default = PinholeCamera(np.eye(4), np.eye(3), 4, 3)
    size = lambda c: (c.width, c.height)  # noqa: E731
    assert size(preview_camera(tmp_path, default)) == (4, 3)
    (tmp_path / "preview_camera.json").write_text("{not json")
    assert size(preview_camera(tmp_path, default)) == (4, 3)  # a broken file falls back
    (tmp_path / "preview_camera.json").write_text(json.dumps(
        {"viewmat": np.eye(4).tolist(), "K": np.eye(3).tolist(), "width": 64, "height": 32}))
    assert size(preview_camera(tmp_path, default)) == (64, 32)


def test_capture_positions_of_the_real_walk(georef_project):
    """The viewer's capture positions (pipeline.capture_path) on the georeferenced walk: the 5
    panoramas in capture order, about their GPS steps apart (1.05, 3.11, 3.19, 2.11 m; georef
    RMS under 1 m), each looking level towards the next; the georef state is metric with the
    ingest origin; a smoothed fly-through path starts at the first and ends at the last."""
    from splatstudio.pipeline.capture_path import capture_poses, georef_state
    from splatstudio.render.video import capture_path_viewmats

    poses = capture_poses(georef_project.root)
    frames = json.loads((georef_project.root / "reproject" / "frames.json").read_text())
    assert [p.frame_id for p in poses] == [f["id"] for f in frames["frames"]]
    c = np.array([p.centre for p in poses])
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    np.testing.assert_allclose(steps, [1.05, 3.11, 3.19, 2.11], atol=1.5)
    for i, p in enumerate(poses):
        assert abs(np.linalg.norm(p.forward) - 1) < 1e-9 and abs(p.forward[2]) < 1e-9
        j = min(i + 1, len(poses) - 1)
        if j != i:
            assert p.forward @ (c[j] - c[i]) > 0.9 * np.linalg.norm((c[j] - c[i])[:2])
    st = georef_state(georef_project.root)
    manifest = json.loads((georef_project.root / "ingest" / "manifest.json").read_text())
    assert st.georeferenced and st.origin.to_dict() == manifest["origin"]
    vms = capture_path_viewmats(c, 10)
    eyes = np.array([-v[:3, :3].T @ v[:3, 3] for v in vms])
    np.testing.assert_allclose(eyes[[0, -1]], c[[0, -1]], atol=1e-6)
