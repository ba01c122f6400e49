"""A training session: a :class:`~splatstudio.train.trainer.Trainer` run to its last step in
one output folder, with checkpoints, evaluations, previews, the CPU-time estimate, pause and
the out-of-memory tiers as small hook objects (in the style of gsplat's ``Strategy``: the loop
calls them at fixed points, each keeps its own state and can be tested alone).

The train stage runs one session in ``train/``; the LAN farm's block training runs one per
spatial block in ``train/blocks/<id>/`` (:mod:`splatstudio.pipeline.blocks`). A session's
folder holds (names of :mod:`splatstudio.pipeline.artifacts`)::

    checkpoints/    ckpt_<step>.pt and latest.json (:class:`CheckpointStore`)
    metrics.json    evaluations (:class:`EvalLog`)
    curve.jsonl     the training curve (:class:`CurveHook`)
    preview.png     the latest preview (:class:`PreviewHook`)
    pause           optional flag file (:func:`wait_while_paused`)

Phases of :meth:`TrainSession.run`: ``resume`` (the newest valid checkpoint of this
fingerprint, or a fresh start that clears the folder), ``start`` (evaluation and preview of
step 0), ``loop`` (steps with the hooks), ``finish`` (final evaluation, preview, checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PRESETS, ProjectConfig, TrainConfig
from ..errors import Cancelled, OutOfGpuMemory, StageError
from ..events import Emitter
from ..project import read_json, write_json_atomic
from ..render.camera import PinholeCamera
from .artifacts import TRAIN_CURVE, TRAIN_PAUSE, read_curve, read_preview_camera

OOM_TIERS: tuple[int, ...] = (3_000_000, 2_000_000, 1_000_000, 500_000, 250_000)
"""Gaussian caps tried in turn after a CUDA out-of-memory error (those below the current count)."""

CURVE_FILE = Path(TRAIN_CURVE.rel).name
"""Name of the training curve in a session folder (one JSON object per line)."""

PAUSE_FILE = Path(TRAIN_PAUSE.rel).name
"""Name of the flag file in a session folder that pauses the loop while it exists."""

PAUSED_PREFIX = "paused"
"""How the progress message starts while training is paused ("paused at step N"); a GUI reads
a stage as paused from it."""

PAUSE_POLL_S = 0.2
"""Seconds between checks of the pause file (and of cancel) while paused."""

ESTIMATE_WARMUP, ESTIMATE_STEPS = 3, 5
"""CPU estimate: steps skipped (first calls are slow), then steps whose median time counts."""

GROWTH_FACTOR = 2.0
"""Assumed mean cost of a step over a run relative to the first steps (densification grows the
Gaussians; the cap and pruning bound it). A deliberately rough factor for the CPU estimate."""


def fmt_seconds(s: float) -> str:
    """`s` seconds in words: "42 s", "17 min", "3.2 h"."""
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def estimate_seconds(cfg: TrainConfig, seconds_per_pixel_step: float, pixels: float,
                     steps_left: int | None = None) -> float:
    """Rough training time in seconds of `cfg` on views of `pixels` pixels each at full size
    (before `cfg.downscale`), from a measured cost per pixel and step (early steps), times
    :data:`GROWTH_FACTOR` for the Gaussians densification adds."""
    steps = cfg.steps if steps_left is None else steps_left
    px = pixels / (cfg.downscale**2)
    return seconds_per_pixel_step * px * steps * GROWTH_FACTOR


def preset_train_config(name: str) -> TrainConfig:
    """The :class:`TrainConfig` of preset `name` (defaults plus its "train" entries)."""
    return ProjectConfig.from_preset(name).train


def rewrite_curve(path: Path, max_step: int) -> None:
    """Cut ``curve.jsonl`` back to the points up to `max_step` (a resume from a checkpoint)."""
    if not path.exists():
        return
    lines = "".join(json.dumps(p) + "\n" for p in read_curve(path, max_step))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(lines, encoding="utf-8")
    os.replace(tmp, path)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write RGB uint8 [H, W, 3] as PNG atomically.

    Raises:
        StageError: the image does not encode.
    """
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise StageError(f"train: could not encode the preview {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def wait_while_paused(out: Path, events: Emitter, step: int, steps: int) -> float:
    """Block while the pause flag ``out/pause`` exists; return the seconds spent paused (0.0
    when the file is absent, the usual case: one ``stat`` per step).

    While paused: logs "train: paused at step N" once, then every :data:`PAUSE_POLL_S`
    seconds checks cancel (raises :class:`Cancelled`, so Stop works while paused) and reports
    progress "paused at step N"; logs the resume. The caller removes the returned seconds from
    its clocks (training seconds, steps/s).
    """
    flag = out / PAUSE_FILE
    if not flag.exists():
        return 0.0
    t0 = time.monotonic()
    events.log(f"train: paused at step {step} (remove train/{PAUSE_FILE} to resume)")
    fraction = 0.02 + 0.96 * step / max(1, steps)
    while flag.exists():
        events.check_cancelled()
        events.progress(fraction, f"{PAUSED_PREFIX} at step {step}")
        time.sleep(PAUSE_POLL_S)
    paused = time.monotonic() - t0
    events.log(f"train: resumed at step {step} after {paused:.1f} s paused")
    return paused


def peak_memory_mb(device: Any) -> float:
    """Peak memory of this process in MiB: CUDA's allocator peak on a CUDA `device`, else the
    resident set's peak (Linux; 0.0 where ``resource`` is missing)."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    except ImportError:  # Windows
        return 0.0


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
class CheckpointStore:
    """The checkpoints of one session folder: ``ckpt_<step>.pt`` and ``latest.json``
    ({file, step, seconds, max_gaussians, fingerprint, previous: {...} | None}).

    The latest and the one before it are kept: a resume tries the latest, then the previous
    one, and deletes (with a warning) each that does not load; another `fingerprint` (config
    or upstream changed) means a fresh start.

    Args:
        folder: the ``checkpoints/`` folder (created on the first save).
        fingerprint: the training's config fingerprint.
        events: for the warnings.
    """

    def __init__(self, folder: Path, fingerprint: str, events: Emitter):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.events = events
        self.latest: dict[str, Any] | None = None
        self.previous: dict[str, Any] | None = None

    def candidates(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(entries, notes): the checkpoints of ``latest.json`` to try in turn -- the latest,
        then the previous one -- when they belong to this fingerprint and their files exist;
        `notes` say in words what is discarded (an unreadable ``latest.json``, a missing
        file)."""
        p = self.folder / "latest.json"
        if not p.exists():
            return [], []
        try:
            meta = read_json(p)
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except Exception as e:  # noqa: BLE001 - a broken sidecar only means "start over"
            return [], [f"train: discarding the checkpoints: {p} does not read ({e})"]
        if meta.get("fingerprint") != self.fingerprint:
            return [], []  # another config: the caller starts over
        out, notes = [], []
        for entry in (meta, meta.get("previous")):
            if not isinstance(entry, dict) or not entry.get("file"):
                continue
            if (self.folder / entry["file"]).exists():
                out.append(entry)
            else:
                notes.append(f"train: checkpoint {entry['file']} named in latest.json is missing")
        return out, notes

    def load_valid(self, trainer: Any) -> dict[str, Any] | None:
        """Load the newest checkpoint that loads and is consistent into `trainer` (its cap
        too); warn about each one discarded (and delete its file). Returns its entry, or None
        when none does."""
        from ..train.trainer import CheckpointError

        entries, notes = self.candidates()
        for note in notes:
            self.events.warning(note)
        for i, entry in enumerate(entries):
            try:
                trainer.load_checkpoint(self.folder / entry["file"])
            except CheckpointError as e:
                then = "trying the previous one" if i + 1 < len(entries) else "starting over"
                self.events.warning(f"train: discarding checkpoint {entry['file']} (step "
                                    f"{entry.get('step', '?')}): {e}; {then}")
                (self.folder / entry["file"]).unlink(missing_ok=True)
                continue
            trainer.set_max_gaussians(int(entry.get("max_gaussians", trainer.max_gaussians)))
            self.latest, self.previous = _entry(entry), None
            if i > 0:  # latest.json names this one now, so a later save keeps it as previous
                self._write()
            return entry
        return None

    def save(self, trainer: Any, seconds: float) -> bool:
        """Save a checkpoint of `trainer` at its step (`seconds` of training so far); keep it
        and the one before it. Returns False (with a warning) when the state is inconsistent:
        such a state is never written."""
        bad = trainer.inconsistency()
        if bad:
            self.events.warning(f"train: no checkpoint at step {trainer.step}: inconsistent "
                                f"state ({bad})")
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"ckpt_{trainer.step:07d}.pt"
        trainer.save_checkpoint(self.folder / name)
        self.record({"file": name, "step": trainer.step, "seconds": round(seconds, 3),
                     "max_gaussians": trainer.max_gaussians})
        return True

    def record(self, entry: dict[str, Any]) -> None:
        """Make `entry` ({file, step, seconds, max_gaussians}; its file already in the folder)
        the latest checkpoint: the latest before it stays as the previous one, ``latest.json``
        is rewritten and every other checkpoint file is deleted."""
        prev = self.latest
        if prev is not None and prev["file"] == entry["file"]:
            prev = self.previous
        self.latest, self.previous = _entry(entry), prev
        self._write()
        keep = {entry["file"]} | ({prev["file"]} if prev else set())
        for old in self.folder.glob("ckpt_*.pt"):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def read(self) -> None:
        """Take the latest and previous entries from ``latest.json`` when it is of this
        fingerprint (nothing is loaded; a missing or broken file means none)."""
        try:
            meta = read_json(self.folder / "latest.json")
        except Exception:  # noqa: BLE001 - absent or broken: no checkpoint yet
            return
        if isinstance(meta, dict) and meta.get("fingerprint") == self.fingerprint:
            self.latest, self.previous = _entry(meta), meta.get("previous")

    def clear(self) -> None:
        """Delete every checkpoint (a fresh start)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.latest = self.previous = None

    def _write(self) -> None:
        assert self.latest is not None
        write_json_atomic(self.folder / "latest.json",
                          {**self.latest, "fingerprint": self.fingerprint,
                           "previous": self.previous})


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("file", "step", "seconds", "max_gaussians") if k in entry}


# ---------------------------------------------------------------------------------------------
# Evaluations
# ---------------------------------------------------------------------------------------------
class EvalLog:
    """The evaluations of a session, kept in ``metrics.json`` ({device, evals: [...],
    config}): per evaluation step, psnr (dB), ssim, gaussians, seconds, peak_memory_mb, views,
    held_out (False: no held-out view, 8 training views stood in)."""

    def __init__(self, out: Path, config: TrainConfig):
        self.path = Path(out) / "metrics.json"
        self.config = config
        self.history: list[dict[str, Any]] = []

    def restore(self, step: int) -> None:
        """Keep the evaluations of ``metrics.json`` up to `step` (a resume)."""
        if self.path.exists():
            self.history = [e for e in read_json(self.path).get("evals", []) if e["step"] <= step]

    @property
    def has_step0(self) -> bool:
        return bool(self.history) and self.history[0]["step"] == 0

    def evaluate(self, session: TrainSession) -> dict[str, Any]:
        """Evaluate `session`'s trainer (held-out views, else 8 training views), record and
        write the entry, report psnr and ssim; a CUDA out-of-memory error goes through the
        session's memory tiers and the evaluation is tried again."""
        import torch

        trainer = session.trainer
        while True:
            oom = None
            try:
                ev = trainer.evaluate() or trainer.evaluate(trainer.train_views[:8])
            except torch.cuda.OutOfMemoryError as e:
                oom = str(e).splitlines()[0] if str(e) else "out of memory"
            if oom is None:
                break
            session.oom.recover(session, "evaluation", oom)  # outside the except: graph gone
        entry = {
            "step": trainer.step,
            "psnr": round(ev["psnr"], 4),
            "ssim": round(ev["ssim"], 5),
            "gaussians": len(trainer.splats["means"]),
            "seconds": round(session.elapsed(), 3),
            "peak_memory_mb": round(peak_memory_mb(trainer.device), 1),
            "views": len(trainer.eval_views) or min(8, len(trainer.train_views)),
            "held_out": bool(trainer.eval_views),
        }
        self.history[:] = [e for e in self.history if e["step"] != trainer.step] + [entry]
        write_json_atomic(self.path, {"device": str(trainer.device), "evals": self.history,
                                      "config": dataclasses.asdict(self.config)})
        session.events.metric("psnr", entry["psnr"], step=trainer.step)
        session.events.metric("ssim", entry["ssim"], step=trainer.step)
        return entry


# ---------------------------------------------------------------------------------------------
# Memory tiers
# ---------------------------------------------------------------------------------------------
class OomTiers:
    """CUDA out-of-memory recovery: the Gaussian caps of :data:`OOM_TIERS` below `cap0` (the
    configured cap; 0: none), tried in turn."""

    def __init__(self, cap0: int, tiers: Sequence[int] | None = None):
        self.tiers = [t for t in (OOM_TIERS if tiers is None else tiers) if not cap0 or t < cap0]

    def recover(self, session: TrainSession, where: str, error: str) -> int:
        """After a CUDA out-of-memory error in `where`, outside its ``except`` block (the
        failed step's graph is gone): reload the last checkpoint if the state is inconsistent,
        cut the Gaussians to the next cap, save a checkpoint. Returns the new cap.

        Raises:
            OutOfGpuMemory: no lower cap is left.
            StageError: the state is inconsistent and no checkpoint loads.
        """
        import torch

        trainer, events = session.trainer, session.events
        for o in trainer.optimizers.values():
            o.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        step = trainer.step
        bad = trainer.inconsistency()
        if bad:
            events.warning(f"train: the out-of-memory error in the {where} at step {step} left "
                           f"an inconsistent state ({bad}); reloading the last checkpoint")
            entry = session.checkpoints.load_valid(trainer)
            if entry is None:
                raise StageError(f"train: the out-of-memory error in the {where} at step {step} "
                                 f"left an inconsistent state ({bad}) and no checkpoint loads")
            events.log(f"train: reloaded checkpoint {entry['file']} (step {trainer.step})")
        n = len(trainer.splats["means"])
        fitting = [t for t in self.tiers if t < n]
        if not fitting:
            v = trainer.train_views[0]
            raise OutOfGpuMemory(
                f"train: CUDA out of memory in the {where} with {n} Gaussians at "
                f"{v.width}x{v.height} px even at the strictest cap ({error}); raise downscale, "
                "lower max_gaussians or use a smaller preset (or the CPU)"
            )
        cap = fitting[0]
        self.tiers = [t for t in self.tiers if t < cap]
        trainer.set_max_gaussians(cap, prune=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        session.save_checkpoint()
        events.warning(f"train: CUDA out of memory in the {where} at step {step} with {n} "
                       f"Gaussians; continuing with at most {cap}")
        return cap


# ---------------------------------------------------------------------------------------------
# Step hooks
# ---------------------------------------------------------------------------------------------
class TrainHook:
    """Something the loop does after each step (the session itself does the start and the
    end); it gets the session (trainer, events, folder, clocks)."""

    def after_step(self, session: TrainSession, stats: dict[str, float],
                   step_seconds: float) -> None:
        """After each successful step (`stats`: loss, gaussians; `step_seconds`: its wall
        time)."""


class CurveHook(TrainHook):
    """Every `every` steps (and at the last) one line of ``curve.jsonl``: step, mean loss since
    the previous line, gaussians, steps/s (paused time excluded), memory_mb; each also as a
    metric event."""

    def __init__(self, every: int):
        self.every = max(1, int(every))
        self.losses: list[float] = []
        self.last_t = time.monotonic()
        self.last_step: int | None = None

    def after_step(self, session, stats, step_seconds):
        s = session.trainer.step
        if self.last_step is None:
            self.last_step = s - 1
        self.losses.append(stats["loss"])
        if s % self.every and s != session.config.steps:
            return
        now = time.monotonic()
        sps = (s - self.last_step) / max(1e-9, now - self.last_t - session.paused_since(self.last_t))
        self.last_t, self.last_step = now, s
        point = {"step": s, "loss": float(np.mean(self.losses)), "gaussians": stats["gaussians"],
                 "steps_per_s": sps, "memory_mb": peak_memory_mb(session.trainer.device)}
        self.losses.clear()
        for name, value in point.items():
            if name != "step":
                session.events.metric(name, value, step=s)
        with open(session.out / CURVE_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: round(v, 6) for k, v in point.items()}) + "\n")


class PeriodicHook(TrainHook):
    """Does :meth:`run` every `every` steps before the last (0: never; the start and the end
    are the session's own)."""

    def __init__(self, every: int):
        self.every = int(every)

    def after_step(self, session, stats, step_seconds):
        s = session.trainer.step
        if self.every and s % self.every == 0 and s < session.config.steps:
            self.run(session)

    def run(self, session: TrainSession) -> None:
        raise NotImplementedError


class EvalHook(PeriodicHook):
    """An evaluation every `every` steps (0: only at the start and the end)."""

    def run(self, session):
        session.evals.evaluate(session)


class CheckpointHook(PeriodicHook):
    """A checkpoint every `every` steps (0: only on cancel, memory tiers and the end)."""

    def run(self, session):
        session.save_checkpoint()


class PreviewHook(PeriodicHook):
    """``preview.png`` every `every` steps (0: only at the start and the end), rendered from
    the GUI's ``preview_camera.json`` in the folder when present, else from `default`; a
    preview event names the file. A CUDA out-of-memory error skips the preview with a
    warning."""

    def __init__(self, every: int, default: PinholeCamera):
        super().__init__(every)
        self.default = default

    def camera(self, out: Path) -> PinholeCamera:
        """The camera of ``out/preview_camera.json`` when present and valid, else `default`."""
        return read_preview_camera(out) or self.default

    def render(self, session: TrainSession) -> None:
        """Render and write the preview now."""
        import torch

        trainer = session.trainer
        img = None
        try:
            with torch.no_grad():
                img, _, _ = trainer.render(self.camera(session.out))
        except torch.cuda.OutOfMemoryError:
            pass
        if img is None:
            torch.cuda.empty_cache()
            session.events.warning(f"train: no preview at step {trainer.step}: CUDA out of memory")
            return
        rgb8 = img[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
        write_png(session.out / "preview.png", rgb8)
        session.events.preview(str(session.out / "preview.png"), trainer.step)

    def run(self, session):
        self.render(session)


class CpuEstimateHook(TrainHook):
    """On the CPU, after :data:`ESTIMATE_WARMUP` + :data:`ESTIMATE_STEPS` steps, estimate the
    whole run from the median step time and stop one over ``config.cpu_limit_s`` (unless
    ``allow_slow``) with the largest preset that fits.

    Args:
        pixels_full: mean pixels of a training view at full size (before ``downscale``).
    """

    def __init__(self, pixels_full: float):
        self.pixels_full = float(pixels_full)
        self.times: list[float] = []
        self.done = False

    def after_step(self, session, stats, step_seconds):
        if self.done:
            return
        self.times.append(step_seconds)
        if len(self.times) < ESTIMATE_WARMUP + ESTIMATE_STEPS:
            return
        self.done = True
        sec = float(np.median(self.times[ESTIMATE_WARMUP:]))
        self.check(session, sec, session.config.steps - session.trainer.step)

    def check(self, session: TrainSession, sec: float, steps_left: int) -> None:
        """Report the estimate from `sec` per step; raise StageError when over the limit."""
        config, trainer = session.config, session.trainer
        per_px = sec / float(np.mean([v.width * v.height for v in trainer.train_views]))
        est = estimate_seconds(config, per_px, self.pixels_full, steps_left)
        session.events.metric("estimated_seconds", est, step=trainer.step)
        session.events.log(f"train: {sec:.2f} s per step on the CPU; about "
                           f"{fmt_seconds(est)} to go")
        if est <= config.cpu_limit_s:
            return
        fits = [n for n in PRESETS if estimate_seconds(preset_train_config(n), per_px,
                                                       self.pixels_full) <= config.cpu_limit_s]
        hint = (f"the largest preset that fits is {fits[-1]!r}" if fits
                else "no preset fits; raise downscale or lower steps")
        raise StageError(
            f"train: this run would take about {fmt_seconds(est)} on the CPU ({steps_left} "
            f"steps at {sec:.2f} s now, more as Gaussians grow), over the limit of "
            f"{fmt_seconds(config.cpu_limit_s)} (cpu_limit_s); {hint} for these views; or set "
            "allow_slow to train anyway, or use a CUDA GPU"
        )


def standard_hooks(config: TrainConfig, preview_default: PinholeCamera,
                   pixels_full: float) -> list[TrainHook]:
    """The train stage's hooks from `config`: curve, evaluations, previews, checkpoints, and
    the CPU estimate on the CPU without ``allow_slow`` (the caller drops it off the CPU)."""
    hooks: list[TrainHook] = [CurveHook(config.metrics_every), EvalHook(config.eval_every),
                              PreviewHook(config.preview_every, preview_default),
                              CheckpointHook(config.checkpoint_every)]
    if not config.allow_slow:
        hooks.append(CpuEstimateHook(pixels_full))
    return hooks


# ---------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------
class TrainSession:
    """Runs `trainer` to ``config.steps`` in folder `out` (see the module docstring).

    Args:
        trainer: a fresh :class:`~splatstudio.train.trainer.Trainer`.
        config: the training options (steps; the hooks' periods are in the hooks).
        out: the session folder (``train/`` or a block's folder); created.
        fingerprint: checkpoints of another fingerprint are not resumed.
        events: progress, metrics, logs, cancel; its progress covers 0.02-0.98 for the loop.
        hooks: step hooks (:func:`standard_hooks`); a :class:`PreviewHook` among them also
            renders the start and the end. A :class:`CpuEstimateHook` is ignored off the CPU.
        label: how logs name the session ("train", "block 2/4").
    """

    def __init__(self, trainer: Any, config: TrainConfig, out: Path, fingerprint: str,
                 events: Emitter, hooks: Sequence[TrainHook] = (), label: str = "train"):
        self.trainer = trainer
        self.config = config
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.events = events
        self.label = label
        on_cpu = trainer.device.type == "cpu"
        self.hooks = [h for h in hooks if on_cpu or not isinstance(h, CpuEstimateHook)]
        self.checkpoints = CheckpointStore(self.out / "checkpoints", fingerprint, events)
        self.evals = EvalLog(self.out, config)
        self.oom = OomTiers(trainer.max_gaussians)
        self.seconds_before = 0.0
        self._t0 = time.monotonic()
        self._pauses: list[tuple[float, float]] = []  # (start, seconds) of each pause

    # -- clocks ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training seconds so far, across resumes, paused time excluded."""
        paused = sum(s for _, s in self._pauses)
        return self.seconds_before + time.monotonic() - self._t0 - paused

    def paused_since(self, t: float) -> float:
        """Seconds paused since monotonic time `t`."""
        return sum(s for start, s in self._pauses if start >= t)

    def save_checkpoint(self) -> bool:
        """A checkpoint of the trainer now (see :meth:`CheckpointStore.save`)."""
        return self.checkpoints.save(self.trainer, self.elapsed())

    @property
    def preview(self) -> PreviewHook | None:
        return next((h for h in self.hooks if isinstance(h, PreviewHook)), None)

    # -- phases -----------------------------------------------------------------------------------
    def resume(self) -> dict[str, Any] | None:
        """Resume from the newest valid checkpoint of this fingerprint (curve and evaluations
        cut back to its step), or start fresh: delete the folder's checkpoints and results and
        save a step-0 checkpoint (what an inconsistent state after an early out-of-memory
        error reloads). Returns the checkpoint entry resumed from, or None."""
        trainer = self.trainer
        entry = (self.checkpoints.load_valid(trainer)
                 if (self.checkpoints.folder / "latest.json").exists() else None)
        if entry is not None:
            self.seconds_before = float(entry.get("seconds", 0.0))
            self.evals.restore(trainer.step)
            rewrite_curve(self.out / CURVE_FILE, trainer.step)
            self.events.log(f"{self.label}: resuming from checkpoint {entry['file']} at step "
                            f"{trainer.step}")
            self.events.metric("resumed_step", trainer.step, step=trainer.step)
            return entry
        self.checkpoints.clear()
        for stale in ("splat.ply", "metrics.json", "preview.png", CURVE_FILE):
            (self.out / stale).unlink(missing_ok=True)
        self.save_checkpoint()
        return None

    def start(self) -> None:
        """Evaluate (and preview) step 0 unless the evaluations already have it."""
        if self.trainer.step == 0 and not self.evals.has_step0:
            self.events.progress(0.02, "evaluating the start (step 0)")
            self.evals.evaluate(self)
            if self.preview:
                self.preview.render(self)

    def step(self) -> bool:
        """One training step with pause, cancel and the memory tiers around it, then the
        hooks. Returns False when the step was lost to an out-of-memory error (recovered).

        Raises:
            Cancelled: cancelled (a checkpoint is saved first).
        """
        import torch

        trainer = self.trainer
        try:
            self.events.check_cancelled()
            t = time.monotonic()
            paused = wait_while_paused(self.out, self.events, trainer.step, self.config.steps)
            if paused:
                self._pauses.append((t, paused))
        except Cancelled:
            self.save_checkpoint()
            self.events.artifact(f"{self.out.name}/checkpoints")
            raise
        oom = None
        try:
            t_step = time.perf_counter()
            stats = trainer.train_step()
            dt = time.perf_counter() - t_step
        except torch.cuda.OutOfMemoryError as e:
            oom = str(e).splitlines()[0] if str(e) else "out of memory"
        if oom is not None:
            # outside the except block: the exception, its traceback and so the failed step's
            # graph are released before the recovery allocates anything
            self.oom.recover(self, "training step", oom)
            return False
        s, steps = trainer.step, self.config.steps
        self.events.progress(0.02 + 0.96 * s / steps, f"step {s}/{steps}")
        for hook in self.hooks:
            hook.after_step(self, stats, dt)
        return True

    def loop(self) -> None:
        """Steps until ``config.steps``."""
        while self.trainer.step < self.config.steps:
            self.step()

    def finish(self) -> dict[str, Any]:
        """Final evaluation, preview and checkpoint. Returns the final evaluation entry."""
        final = self.evals.evaluate(self)
        if self.preview:
            self.preview.render(self)
        self.save_checkpoint()
        return final

    def run(self) -> dict[str, Any]:
        """:meth:`resume`, :meth:`start`, :meth:`loop`, :meth:`finish`; returns the final
        evaluation entry."""
        self.resume()
        self.start()
        self.loop()
        return self.finish()
