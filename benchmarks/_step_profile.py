"""Per-phase wall time of CPU training steps (used by bench_vs_opensplat.py).

Phases are timed by wrapping the rasterizer's internal functions (projection, tile binning,
compositing forward / backward) and the trainer's loss, backward, optimizer and densification
calls with ``time.perf_counter`` (torch's CPU ops are synchronous, so wall time is the cost).
``backward_other`` is the autograd backward minus the compositing backward: the projection,
SH and SSIM backward. ``ssim_fwd_bwd`` is timed separately on the rendered image.
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from contextlib import contextmanager

import torch


class PhaseTimer:
    """Accumulates seconds per phase name; nested phases are counted in both."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[name] += time.perf_counter() - t0


def _wrap(mod, name: str, timer: PhaseTimer, phase: str, generator: bool = False):
    orig = getattr(mod, name)
    if generator:
        def gen_wrapper(*a, **k):
            it = orig(*a, **k)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    timer.t[phase] += time.perf_counter() - t0
                    return
                timer.t[phase] += time.perf_counter() - t0
                yield item
        setattr(mod, name, gen_wrapper)
    else:
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                timer.t[phase] += time.perf_counter() - t0
        setattr(mod, name, wrapper)
    return orig


def profile_steps(trainer, steps: int, warmup: int = 2) -> dict:
    """Run `warmup` + `steps` training steps of `trainer` with phase timers; returns seconds per
    step of each phase (mean over the timed steps) and the total."""
    from splatstudio.render import numba_impl as ni
    from splatstudio.render import torch_impl as ti
    from splatstudio.train import trainer as trmod

    timer = PhaseTimer()
    patches = []
    wraps = [
        (ti, "_project_camera", "projection", False),
        (ti, "_tile_batches", "tile_binning", True),
        (ti, "_forward_batch", "composite_forward", False),
        (ti, "_backward_batch", "composite_backward", False),
        (trmod, "photometric_loss", "loss_forward", False),
        (ti, "eval_sh", "sh_forward", False),
    ]
    if ni.numba_available():  # the compiled kernels (RasterConfig.kernel "auto"/"numba")
        wraps += [
            (ni, "bin_tiles", "tile_binning", False),
            (ni, "_forward_kernel", "composite_forward", False),
            (ni, "_backward_kernel", "composite_backward", False),
        ]
    for mod, name, phase, gen in wraps:
        patches.append((mod, name, _wrap(mod, name, timer, phase, gen)))
    opt_steps = {}
    for k, o in trainer.optimizers.items():
        orig = o.step

        def st(*a, _orig=orig, **kw):
            with timer.phase("optimizer"):
                return _orig(*a, **kw)
        opt_steps[k] = orig
        o.step = st
    strat = trainer.strategy
    orig_post = strat.step_post_backward
    orig_pre = strat.step_pre_backward

    def post(*a, **k):
        with timer.phase("densification"):
            return orig_post(*a, **k)

    def pre(*a, **k):
        with timer.phase("densification"):
            return orig_pre(*a, **k)
    strat.step_post_backward = post
    strat.step_pre_backward = pre
    orig_backward = torch.Tensor.backward

    def bwd(self, *a, **k):
        with timer.phase("backward_total"):
            return orig_backward(self, *a, **k)
    torch.Tensor.backward = bwd
    warnings.filterwarnings("ignore", message=".*optimizer.step.*overridden.*")
    try:
        for _ in range(warmup):
            trainer.train_step()
        timer.t.clear()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        total = time.perf_counter() - t0
    finally:
        torch.Tensor.backward = orig_backward
        for mod, name, orig in patches:
            setattr(mod, name, orig)
        for k, o in trainer.optimizers.items():
            o.step = opt_steps[k]
        strat.step_post_backward = orig_post
        strat.step_pre_backward = orig_pre
    t = {k: v / steps for k, v in timer.t.items()}
    # composite backward runs inside backward_total; tile binning both in forward and backward
    t["backward_other"] = t.get("backward_total", 0.0) - t.get("composite_backward", 0.0)
    t["step_total"] = total / steps
    # tile binning runs in the forward only (the backward reuses its lists)
    accounted = sum(t.get(k, 0.0) for k in ("projection", "sh_forward", "tile_binning",
                                            "composite_forward", "loss_forward",
                                            "backward_total", "optimizer", "densification"))
    t["other"] = t["step_total"] - accounted  # view choice, targets, Python glue
    return {k: round(v, 5) for k, v in sorted(t.items())}


def ssim_cost(h: int, w: int, repeats: int = 5) -> float:
    """Seconds of one photometric loss forward + backward on an [1, h, w, 3] image."""
    from splatstudio.train.losses import photometric_loss

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, h, w, 3, generator=g).requires_grad_(True)
    ref = torch.rand(1, h, w, 3, generator=g)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        photometric_loss(img, ref, None, 0.2).backward()
        best = min(best, time.perf_counter() - t0)
    return best
