"""pipeline.train_session: each hook alone on a stand-in trainer, then a whole session with
cancel and resume on the real trainer."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from splatstudio.config import ProjectConfig, TrainConfig
from splatstudio.errors import Cancelled, OutOfGpuMemory, StageError
from splatstudio.events import Emitter, Metric, Progress
from splatstudio.pipeline import train_session as ts
from splatstudio.render.camera import PinholeCamera
from splatstudio.train.trainer import CheckpointError


class FakeTrainer:
    """What a session uses of a Trainer, cheap: a step is a counter, a checkpoint a JSON
    file."""

    def __init__(self, n: int = 100, views: int = 3, size: int = 10):
        self.step, self.max_gaussians, self.bad = 0, 0, None
        self.device = torch.device("cpu")
        self.splats = {"means": torch.zeros(n, 3)}
        self.train_views = [SimpleNamespace(width=size, height=size)] * views
        self.eval_views: list = []
        self.optimizers: dict = {}
        self.rendered: list = []

    def train_step(self):
        self.step += 1
        return {"loss": 1.0 / self.step, "gaussians": float(len(self.splats["means"]))}

    def save_checkpoint(self, path):
        Path(path).write_text(json.dumps({"step": self.step, "n": len(self.splats["means"])}))

    def load_checkpoint(self, path):
        try:
            d = json.loads(Path(path).read_text())
        except ValueError as e:
            raise CheckpointError(f"{path}: does not load ({e})") from None
        self.step, self.splats = d["step"], {"means": torch.zeros(d["n"], 3)}

    def inconsistency(self):
        return self.bad

    def set_max_gaussians(self, n, *, prune=False):
        self.max_gaussians = n
        if prune and n and len(self.splats["means"]) > n:
            self.splats = {"means": self.splats["means"][:n]}

    def evaluate(self, views=None):
        return {"psnr": 10.0 + self.step, "ssim": 0.5}

    def render(self, camera):
        self.rendered.append(camera)
        return torch.full((1, camera.height, camera.width, 3), 0.5), None, {}


def _events(got: list | None = None, cancel: threading.Event | None = None) -> Emitter:
    sink = got.append if got is not None else (lambda e: None)
    return Emitter("train", sink, cancel=cancel, min_interval_s=0.0)


def _session(tmp_path, trainer=None, hooks=(), steps=20, fingerprint="f1", **ev):
    cfg = TrainConfig(steps=steps)
    return ts.TrainSession(trainer or FakeTrainer(), cfg, tmp_path / "train", fingerprint,
                           _events(**ev), hooks)


def test_checkpoints_keep_two_and_fall_back_to_the_previous(tmp_path):
    s = _session(tmp_path)
    store, tr = s.checkpoints, s.trainer
    for step in (5, 10, 15):
        tr.step = step
        assert store.save(tr, 1.0)
    assert sorted(p.name for p in store.folder.glob("ckpt_*")) == ["ckpt_0000010.pt",
                                                                  "ckpt_0000015.pt"]
    (store.folder / "ckpt_0000015.pt").write_text("{torn")
    fresh = FakeTrainer()
    got: list = []
    store2 = ts.CheckpointStore(store.folder, "f1", _events(got))
    entry = store2.load_valid(fresh)
    assert entry["step"] == 10 and fresh.step == 10
    assert not (store.folder / "ckpt_0000015.pt").exists()  # the torn one is deleted
    assert any("discarding checkpoint ckpt_0000015.pt" in getattr(e, "message", "") for e in got)
    assert json.loads((store.folder / "latest.json").read_text())["file"] == "ckpt_0000010.pt"
    # another fingerprint: nothing to resume
    assert ts.CheckpointStore(store.folder, "f2", _events()).load_valid(FakeTrainer()) is None


def test_an_inconsistent_state_is_never_saved(tmp_path):
    s = _session(tmp_path)
    s.trainer.bad = "parameters of different lengths"
    assert not s.save_checkpoint()
    assert not (s.checkpoints.folder / "latest.json").exists()


def test_curve_hook_writes_every_n_steps_and_the_last(tmp_path):
    s = _session(tmp_path, steps=12)
    hook = ts.CurveHook(5)
    for _ in range(12):
        stats = s.trainer.train_step()
        hook.after_step(s, stats, 0.01)
    lines = [json.loads(x) for x in (s.out / ts.CURVE_FILE).read_text().splitlines()]
    assert [p["step"] for p in lines] == [5, 10, 12]
    assert lines[0]["loss"] == pytest.approx(np.mean([1 / i for i in range(1, 6)]), abs=1e-6)
    assert set(lines[0]) == {"step", "loss", "gaussians", "steps_per_s", "memory_mb"}


def test_cpu_estimate_refuses_with_the_largest_preset_that_fits(tmp_path):
    cfg = ProjectConfig.from_preset("quality").train
    tr = FakeTrainer(size=100)  # 10,000 px views, at full size too
    s = ts.TrainSession(tr, cfg, tmp_path / "train", "f", _events(), ())
    hook = ts.CpuEstimateHook(pixels_full=100 * 100)
    # 'test' (300 steps) fits a 60 s limit at 0.05 s per step; 'quality' does not
    cfg.cpu_limit_s = 60.0
    with pytest.raises(StageError, match="largest preset that fits is 'test'"):
        hook.check(s, 0.05 * (cfg.downscale ** 2), cfg.steps)
    cfg.cpu_limit_s = 1e9
    hook.check(s, 0.05, cfg.steps)  # within the limit: no error
    # the hook measures: warm-up steps skipped, then the median
    cfg.cpu_limit_s = 1.0
    with pytest.raises(StageError, match="no preset fits"):
        for t in [9.0] * ts.ESTIMATE_WARMUP + [2.0] * ts.ESTIMATE_STEPS:
            hook.after_step(s, {}, t)


def test_oom_tiers_cut_to_the_next_cap_and_stop_past_the_last(tmp_path):
    s = _session(tmp_path, trainer=FakeTrainer(n=300))
    s.oom = ts.OomTiers(cap0=0, tiers=(250, 200))
    assert s.oom.recover(s, "training step", "boom") == 250
    assert len(s.trainer.splats["means"]) == 250 and s.trainer.max_gaussians == 250
    assert (s.checkpoints.folder / "latest.json").exists()  # saved after the cut
    assert s.oom.recover(s, "evaluation", "boom") == 200
    with pytest.raises(OutOfGpuMemory, match="strictest cap"):
        s.oom.recover(s, "evaluation", "boom")
    assert ts.OomTiers(cap0=300, tiers=(400, 250)).tiers == [250]


def test_oom_with_an_inconsistent_state_reloads_the_checkpoint(tmp_path):
    s = _session(tmp_path, trainer=FakeTrainer(n=300))
    s.oom = ts.OomTiers(cap0=0, tiers=(250,))
    s.trainer.step = 4
    s.save_checkpoint()
    s.trainer.step, s.trainer.bad = 7, "means grown"
    orig = s.trainer.load_checkpoint

    def load(path):
        orig(path)
        s.trainer.bad = None

    s.trainer.load_checkpoint = load
    s.oom.recover(s, "training step", "boom")
    assert s.trainer.step == 4


def test_preview_hook_uses_the_gui_camera_when_valid(tmp_path):
    s = _session(tmp_path)
    default = PinholeCamera(np.eye(4), np.diag([5.0, 5.0, 1.0]), 8, 6)
    hook = ts.PreviewHook(every=5, default=default)
    hook.render(s)
    assert s.trainer.rendered[-1] is default and (s.out / "preview.png").exists()
    gui = PinholeCamera(np.eye(4), np.diag([5.0, 5.0, 1.0]), 16, 12)
    (s.out / "preview_camera.json").write_text(json.dumps(gui.to_dict()))
    assert hook.camera(s.out).width == 16
    (s.out / "preview_camera.json").write_text("{")
    assert hook.camera(s.out) is default


def test_a_session_cancelled_mid_run_resumes_from_its_checkpoint(tmp_path):
    token = threading.Event()
    got: list = []

    def sink(e):
        got.append(e)
        if isinstance(e, Progress) and e.message == "step 12/20":
            token.set()

    events = Emitter("train", sink, cancel=token, min_interval_s=0.0)
    cfg = TrainConfig(steps=20)
    hooks = [ts.CheckpointHook(5), ts.EvalHook(10), ts.CurveHook(2)]
    s = ts.TrainSession(FakeTrainer(), cfg, tmp_path / "t", "fp", events, hooks)
    with pytest.raises(Cancelled):
        s.run()
    assert json.loads((tmp_path / "t/checkpoints/latest.json").read_text())["step"] == 12
    got.clear()
    s2 = ts.TrainSession(FakeTrainer(), cfg, tmp_path / "t", "fp", _events(got), hooks)
    final = s2.run()
    resumed = [e.value for e in got if isinstance(e, Metric) and e.name == "resumed_step"]
    assert resumed == [12] and final["step"] == 20
    evals = json.loads((tmp_path / "t/metrics.json").read_text())["evals"]
    assert [e["step"] for e in evals] == [0, 10, 20]  # the start, periodic and final once each
    curve = [json.loads(x)["step"] for x in (tmp_path / "t" / ts.CURVE_FILE).read_text().splitlines()]
    assert curve == sorted(set(curve)) and curve[-1] == 20  # cut back at the resume, no repeats


def test_a_session_of_the_real_trainer_trains(tmp_path):
    pytest.importorskip("gsplat")
    from splatstudio.train.trainer import Trainer
    from tests.unit.test_train_core import _scene, _views

    scene = _scene(120)
    views = _views(scene, n_views=5, size=24)
    cfg = TrainConfig(steps=30, sh_degree=1, refine_start=1000)
    tr = Trainer(views[1:], views[:1], scene[0].numpy(), np.full((120, 3), 0.5, np.float32), cfg)
    hooks = ts.standard_hooks(cfg, views[0].camera, 24 * 24)
    final = ts.TrainSession(tr, cfg, tmp_path / "b", "fp", _events(), hooks).run()
    evals = json.loads((tmp_path / "b" / "metrics.json").read_text())["evals"]
    assert final["step"] == 30 and evals[0]["step"] == 0 and final["psnr"] > evals[0]["psnr"]
    assert (tmp_path / "b" / "preview.png").exists()
