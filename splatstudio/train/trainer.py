"""The training loop: render a view, L1 + SSIM loss against the photo, Adam, densify.

The loop is gsplat's ``examples/simple_trainer.py`` reduced to what SplatStudio needs (3DGS:
Kerbl et al. 2023): one view per step, SH degree raised by one every `sh_degree_interval`
steps, loss (1 - 0.2) L1 + 0.2 (1 - SSIM) over the view's mask, densification and pruning by
``gsplat.strategy.DefaultStrategy`` (pure torch, so it runs on the CPU with our rasterizer
too) or ``gsplat.strategy.MCMCStrategy`` (Kheradmand et al. 2024; a hard cap on the count, with
the opacity and scale regularisers of gsplat's MCMC recipe; on the CPU through
:mod:`splatstudio.train.mcmc`), held-out evaluation (PSNR, SSIM) and checkpoints written
atomically that resume exactly.
Rendering goes through :func:`splatstudio.render.rasterize`: gsplat's CUDA kernels on a GPU,
our differentiable torch rasterizer on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..render import rasterize
from .losses import photometric_loss, psnr, ssim
from .model import init_splats, make_optimizers, means_lr_scheduler


@dataclass
class TrainView:
    """One training or evaluation image with its camera.

    Attributes:
        name: image name (for reports).
        viewmat: [4, 4] world-to-camera (OpenCV axes), float32.
        K: [3, 3] intrinsics in pixels (pixel centres at +0.5).
        image: [H, W, 3] uint8 RGB.
        mask: [H, W] bool, True where the pixel counts (None: all).
    """

    name: str
    viewmat: np.ndarray
    K: np.ndarray
    image: np.ndarray
    mask: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(kw_only=True)
class TrainerConfig:
    """Hyper-parameters of the loop (defaults: gsplat's simple_trainer / the 3DGS paper)."""

    steps: int = 7000
    sh_degree: int = 3
    sh_degree_interval: int = 1000
    ssim_lambda: float = 0.2
    init_opacity: float = 0.1
    init_scale: float = 1.0
    refine_start: int = 500
    refine_stop: int = 15000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    prune_opacity: float = 0.005
    max_gaussians: int = 0  # 0: no cap (mcmc: 1M, gsplat's default cap)
    strategy: str = "default"  # "default" (3DGS split/clone/prune) or "mcmc"
    opacity_reg: float = -1.0  # < 0: 0.01 with mcmc (gsplat's MCMC recipe), else 0
    scale_reg: float = -1.0  # < 0: 0.01 with mcmc, else 0
    noise_lr: float = 5e5  # mcmc: position noise scale (gsplat's default)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def make_strategy(config: TrainerConfig) -> Any:
    """The gsplat densification strategy of `config` (``default`` or ``mcmc``).

    Raises:
        ValueError: an unknown strategy name.
    """
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if config.strategy == "default":
        return DefaultStrategy(
            prune_opa=config.prune_opacity,
            grow_grad2d=config.grow_grad2d,
            refine_start_iter=config.refine_start,
            refine_stop_iter=config.refine_stop,
            reset_every=config.reset_every,
            refine_every=config.refine_every,
        )
    if config.strategy == "mcmc":
        from .mcmc import enable_cpu_mcmc

        enable_cpu_mcmc()
        return MCMCStrategy(
            cap_max=config.max_gaussians or 1_000_000,
            noise_lr=config.noise_lr,
            refine_start_iter=config.refine_start,
            refine_stop_iter=config.refine_stop,
            refine_every=config.refine_every,
            min_opacity=config.prune_opacity,
        )
    raise ValueError(f"unknown densification strategy {config.strategy!r} (default, mcmc)")


def scene_scale_from_cameras(viewmats: np.ndarray) -> float:
    """1.1 x the largest distance of a camera centre from their mean (gsplat's rule), metres."""
    centres = np.stack([-v[:3, :3].T @ v[:3, 3] for v in viewmats])
    return float(1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0


class Trainer:
    """Trains Gaussians on `train_views`, evaluates on `eval_views`.

    Args:
        train_views, eval_views: lists of :class:`TrainView`.
        points: [N,3] initial means (world metres); colors: [N,3] uint8 or [0,1] float.
        config: :class:`TrainerConfig`.
        device: torch device ("cpu" or "cuda").

    Raises:
        ValueError: no training views, no points, or an unknown strategy.
    """

    def __init__(
        self,
        train_views: list[TrainView],
        eval_views: list[TrainView],
        points: np.ndarray,
        colors: np.ndarray,
        config: TrainerConfig,
        device: str | torch.device = "cpu",
    ):
        if not train_views:
            raise ValueError("no training views")
        self.cfg = config
        self.device = torch.device(device)
        self.train_views = train_views
        self.eval_views = eval_views
        self.scene_scale = scene_scale_from_cameras(np.stack([v.viewmat for v in train_views]))
        self.splats = init_splats(
            points,
            colors,
            sh_degree=config.sh_degree,
            init_opacity=config.init_opacity,
            init_scale=config.init_scale,
            device=self.device,
            seed=config.seed,
        )
        self.optimizers = make_optimizers(self.splats, self.scene_scale)
        self.scheduler = means_lr_scheduler(self.optimizers["means"], config.steps)
        self.strategy = make_strategy(config)
        self.strategy.check_sanity(self.splats, self.optimizers)
        self.strategy_state = self._initial_strategy_state()
        self.step = 0
        self.rng = np.random.default_rng(config.seed)
        self._order: list[int] = []
        self._bg = torch.tensor(config.background, dtype=torch.float32, device=self.device)

    @property
    def mcmc(self) -> bool:
        """True when the MCMC strategy densifies."""
        return self.cfg.strategy == "mcmc"

    @property
    def regularisers(self) -> tuple[float, float]:
        """(opacity_reg, scale_reg) in effect: negative config values mean 0.01 with MCMC
        (gsplat's MCMC recipe) and 0 with the default strategy."""
        auto = 0.01 if self.mcmc else 0.0
        return tuple(auto if r < 0 else r for r in (self.cfg.opacity_reg, self.cfg.scale_reg))

    def _initial_strategy_state(self) -> dict[str, Any]:
        if self.mcmc:
            return self.strategy.initialize_state()
        return self.strategy.initialize_state(scene_scale=self.scene_scale)

    # -- rendering ------------------------------------------------------------------------
    def render(
        self, viewmat: np.ndarray, K: np.ndarray, width: int, height: int, sh_degree: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Render the current Gaussians: (colors [1,H,W,3], alphas [1,H,W,1], info)."""
        p = self.splats
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        sh = torch.cat([p["sh0"], p["shN"]], 1)
        return rasterize(
            p["means"],
            p["quats"],
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            sh,
            torch.as_tensor(viewmat, dtype=torch.float32, device=self.device)[None],
            torch.as_tensor(K, dtype=torch.float32, device=self.device)[None],
            width,
            height,
            sh_degree=deg,
            backgrounds=self._bg[None],
            packed=False,
        )

    def _target(self, view: TrainView) -> tuple[torch.Tensor, torch.Tensor | None]:
        img = torch.from_numpy(view.image).to(self.device).float().div(255.0)[None]
        mask = None if view.mask is None else torch.from_numpy(view.mask).to(self.device)[None]
        return img, mask

    # -- the loop -------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step on the next view of a shuffled epoch; returns loss and count."""
        if not self._order:
            self._order = list(self.rng.permutation(len(self.train_views)))
        view = self.train_views[self._order.pop()]
        step = self.step
        sh_degree = min(step // max(1, self.cfg.sh_degree_interval), self.cfg.sh_degree)
        colors, _, info = self.render(view.viewmat, view.K, view.width, view.height, sh_degree)
        self.strategy.step_pre_backward(self.splats, self.optimizers, self.strategy_state, step, info)
        gt, mask = self._target(view)
        loss = photometric_loss(colors, gt, mask, self.cfg.ssim_lambda)
        opacity_reg, scale_reg = self.regularisers
        if opacity_reg:
            loss = loss + opacity_reg * torch.sigmoid(self.splats["opacities"]).mean()
        if scale_reg:
            loss = loss + scale_reg * torch.exp(self.splats["scales"]).mean()
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.mcmc:
            # MCMC's position noise scales with the current means learning rate (gsplat).
            lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.strategy.step_post_backward(
                self.splats, self.optimizers, self.strategy_state, step, info, lr=lr
            )
        else:
            self.scheduler.step()
            self.strategy.step_post_backward(
                self.splats, self.optimizers, self.strategy_state, step, info, packed=False
            )
        if self.cfg.max_gaussians and len(self.splats["means"]) > self.cfg.max_gaussians:
            self._prune_to(self.cfg.max_gaussians)
        self.step += 1
        return {"loss": float(loss.detach()), "gaussians": float(len(self.splats["means"]))}

    def set_max_gaussians(self, n: int) -> None:
        """Change the cap on the Gaussian count (0: none); MCMC's own cap follows it."""
        self.cfg.max_gaussians = int(n)
        if self.mcmc:
            self.strategy.cap_max = int(n) or 1_000_000

    def _prune_to(self, n: int) -> None:
        """Keep the `n` most opaque Gaussians (the cap of the memory tiers)."""
        from gsplat.strategy.ops import remove

        op = self.splats["opacities"].detach()
        drop = torch.ones_like(op, dtype=torch.bool)
        drop[torch.topk(op, n).indices] = False
        remove(self.splats, self.optimizers, self.strategy_state, drop)

    @torch.no_grad()
    def evaluate(self, views: list[TrainView] | None = None) -> dict[str, float]:
        """Mean PSNR (dB) and SSIM over `views` (default: the held-out views), masked."""
        views = self.eval_views if views is None else views
        if not views:
            return {}
        ps, ss = [], []
        for v in views:
            colors, _, _ = self.render(v.viewmat, v.K, v.width, v.height)
            gt, mask = self._target(v)
            img = colors.clamp(0, 1)
            ps.append(psnr(img, gt, mask))
            ss.append(ssim(img, gt, mask))
        return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}

    def train(
        self,
        steps: int | None = None,
        callback: Callable[[int, dict[str, float]], bool | None] | None = None,
    ) -> None:
        """Run until `steps` (default config.steps); `callback(step, stats)` after each step
        may return True to stop early (cancel, pause)."""
        end = self.cfg.steps if steps is None else steps
        while self.step < end:
            stats = self.train_step()
            if callback is not None and callback(self.step, stats):
                break

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        """Everything needed to resume exactly, written atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "step": self.step,
                "config": asdict(self.cfg),
                "splats": self.splats.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "scheduler": self.scheduler.state_dict(),
                "strategy_state": self.strategy_state,
                "rng": self.rng.bit_generator.state,
                "order": self._order,
                "torch_rng": torch.get_rng_state(),
            },
            tmp,
        )
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint of :meth:`save_checkpoint` (the Gaussian count may differ)."""
        ck = torch.load(path, map_location=self.device, weights_only=False)
        for name, value in ck["splats"].items():
            self.splats[name] = torch.nn.Parameter(value.to(self.device))
        self.optimizers = make_optimizers(self.splats, self.scene_scale)
        for k, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        self.scheduler = means_lr_scheduler(self.optimizers["means"], self.cfg.steps)
        self.scheduler.load_state_dict(ck["scheduler"])
        self.strategy_state = ck["strategy_state"]
        self.rng.bit_generator.state = ck["rng"]
        self._order = list(ck["order"])
        torch.set_rng_state(ck["torch_rng"])
        self.step = int(ck["step"])

