"""The training loop: render a view, L1 + SSIM loss against the photo, Adam, densify.

The loop is gsplat's ``examples/simple_trainer.py`` reduced to what SplatStudio needs (3DGS:
Kerbl et al. 2023): one view per step, SH degree raised by one every `sh_degree_interval`
steps, loss (1 - 0.2) L1 + 0.2 (1 - SSIM) over the view's mask, densification and pruning by
``gsplat.strategy.DefaultStrategy`` (pure torch, so it runs on the CPU with our rasterizer
too; with the opacity reset gsplat 1.5.3 skips put back, :mod:`splatstudio.train.strategy`) or ``gsplat.strategy.MCMCStrategy`` (Kheradmand et al. 2024; a hard cap on the count, with
the opacity and scale regularisers of gsplat's MCMC recipe; on the CPU through
:mod:`splatstudio.train.mcmc`), held-out evaluation (PSNR, SSIM) and checkpoints written
atomically that resume exactly on any device (loaded on the CPU, then moved; the CPU and CUDA
random states are saved separately) and are checked before any of them is used
(:class:`CheckpointError`).
Rendering goes through :func:`splatstudio.render.rasterize`: gsplat's CUDA kernels on a GPU,
our differentiable torch rasterizer on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..render import rasterize
from ..render.camera import PinholeCamera, camera_centres
from .losses import no_tf32, photometric_loss, psnr, ssim
from .model import init_splats, make_optimizers, means_lr_scheduler

CHECKPOINT_KEYS = ("step", "splats", "optimizers", "scheduler", "strategy_state", "rng", "order",
                   "torch_rng")
"""Entries every checkpoint of :meth:`Trainer.save_checkpoint` holds (``cuda_rng`` is optional)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable (torn, corrupt) or inconsistent (parameters
    of different lengths, optimizer moments or strategy state of another size). The message
    names the file and what is wrong."""


def torch_rng_states(device: torch.device) -> dict[str, torch.Tensor | None]:
    """torch's random states to save: {"cpu": CPU generator state (ByteTensor), "cuda": the
    state of `device`'s CUDA generator (ByteTensor, CPU) or None off CUDA}."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def restore_torch_rng(cpu: torch.Tensor, cuda: torch.Tensor | None, device: torch.device) -> None:
    """Set torch's random states saved by :func:`torch_rng_states`. Both go back as CPU
    ByteTensors whatever device the checkpoint was loaded to (``torch.set_rng_state`` raises
    TypeError on anything else); the CUDA state is restored on a CUDA `device` when the
    checkpoint has one (a checkpoint of a CPU run resumed on CUDA has none)."""
    torch.set_rng_state(cpu.detach().to("cpu", torch.uint8))
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda.detach().to("cpu", torch.uint8), device)


@dataclass
class TrainView:
    """One training or evaluation image with its camera.

    Attributes:
        name: image name (for reports).
        camera: its :class:`~splatstudio.render.camera.PinholeCamera` (world = ENU metres),
            of the image's size.
        image: [H, W, 3] uint8 RGB.
        mask: [H, W] bool, True where the pixel counts (None: all).

    Raises:
        ValueError: (at construction) an image of another size than the camera, or a mask of
            another size than the image.
    """

    name: str
    camera: PinholeCamera
    image: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if (w, h) != (self.camera.width, self.camera.height):
            raise ValueError(f"view {self.name}: image {w}x{h}, camera "
                             f"{self.camera.width}x{self.camera.height}")
        if self.mask is not None and self.mask.shape[:2] != (h, w):
            raise ValueError(f"view {self.name}: mask {self.mask.shape[1]}x{self.mask.shape[0]}, "
                             f"image {w}x{h}")

    @property
    def width(self) -> int:
        return self.camera.width

    @property
    def height(self) -> int:
        return self.camera.height


@dataclass(kw_only=True)
class TrainExtras:
    """What the loop takes beyond :class:`~splatstudio.config.TrainConfig` (fixed for the
    app, varied by tests and benchmarks).

    Attributes:
        init_scale: factor on the initial scales (mean distance to the 3 nearest points).
        noise_lr: MCMC position-noise scale (gsplat's default 5e5).
        background: RGB in [0, 1] behind the Gaussians.
    """

    init_scale: float = 1.0
    noise_lr: float = 5e5
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)


def make_strategy(config: TrainConfig, extras: TrainExtras | None = None) -> Any:
    """The gsplat densification strategy of `config` (``default`` or ``mcmc``; MCMC's cap is
    ``max_gaussians``, 1M, gsplat's default, when that is 0).

    Raises:
        ValueError: an unknown strategy name.
    """
    from gsplat.strategy import MCMCStrategy

    from .strategy import ResettingDefaultStrategy

    if config.strategy == "default":
        return ResettingDefaultStrategy(
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
            noise_lr=(extras or TrainExtras()).noise_lr,
            refine_start_iter=config.refine_start,
            refine_stop_iter=config.refine_stop,
            refine_every=config.refine_every,
            min_opacity=config.prune_opacity,
        )
    raise ValueError(f"unknown densification strategy {config.strategy!r} (default, mcmc)")


def scene_scale_from_cameras(viewmats: np.ndarray) -> float:
    """1.1 x the largest distance of a camera centre from their mean (gsplat's rule), metres;
    `viewmats` ``[C, 4, 4]`` world-to-camera."""
    centres = camera_centres(viewmats)
    return float(1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0


class Trainer:
    """Trains Gaussians on `train_views`, evaluates on `eval_views`.

    Args:
        train_views, eval_views: lists of :class:`TrainView`.
        points: [N,3] initial means (world metres); colors: [N,3] uint8 or [0,1] float.
        config: the project's :class:`~splatstudio.config.TrainConfig` (only read; the
            cap the memory tiers lower is :attr:`max_gaussians`).
        device: torch device ("cpu" or "cuda").
        extras: :class:`TrainExtras` (default: the app's).

    Raises:
        ValueError: no training views, no points, or an unknown strategy.
    """

    def __init__(
        self,
        train_views: list[TrainView],
        eval_views: list[TrainView],
        points: np.ndarray,
        colors: np.ndarray,
        config: TrainConfig,
        device: str | torch.device = "cpu",
        extras: TrainExtras | None = None,
    ):
        if not train_views:
            raise ValueError("no training views")
        self.cfg = config
        self.extras = extras or TrainExtras()
        self.max_gaussians = int(config.max_gaussians)
        self.device = torch.device(device)
        self.train_views = train_views
        self.eval_views = eval_views
        self.scene_scale = scene_scale_from_cameras(np.stack([v.camera.viewmat for v in train_views]))
        self.splats = init_splats(
            points,
            colors,
            sh_degree=config.sh_degree,
            init_opacity=config.init_opacity,
            init_scale=self.extras.init_scale,
            device=self.device,
            seed=config.seed,
        )
        self.optimizers = make_optimizers(self.splats, self.scene_scale)
        self.scheduler = means_lr_scheduler(self.optimizers["means"], config.steps)
        self.strategy = make_strategy(config, self.extras)
        self.strategy.check_sanity(self.splats, self.optimizers)
        self.strategy_state = self._initial_strategy_state()
        self.step = 0
        self.rng = np.random.default_rng(config.seed)
        self._order: list[int] = []
        self._bg = torch.tensor(self.extras.background, dtype=torch.float32, device=self.device)

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
        self, camera: PinholeCamera, sh_degree: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Render the current Gaussians from `camera`: (colors [1,H,W,3], alphas [1,H,W,1],
        info).

        Only the ``(deg + 1) ** 2`` SH coefficients the degree uses are passed on (the others
        would be copied, gathered and back-propagated as zeros every step)."""
        p = self.splats
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        k = (deg + 1) ** 2
        sh = p["sh0"] if k == 1 else torch.cat([p["sh0"], p["shN"][:, : k - 1]], 1)
        return rasterize(
            p["means"],
            p["quats"],
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            sh,
            torch.as_tensor(camera.viewmat, dtype=torch.float32, device=self.device)[None],
            torch.as_tensor(camera.K, dtype=torch.float32, device=self.device)[None],
            camera.width,
            camera.height,
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
        colors, _, info = self.render(view.camera, sh_degree)
        self.strategy.step_pre_backward(self.splats, self.optimizers, self.strategy_state, step, info)
        gt, mask = self._target(view)
        loss = photometric_loss(colors, gt, mask, self.cfg.ssim_lambda)
        opacity_reg, scale_reg = self.regularisers
        if opacity_reg:
            loss = loss + opacity_reg * torch.sigmoid(self.splats["opacities"]).mean()
        if scale_reg:
            loss = loss + scale_reg * torch.exp(self.splats["scales"]).mean()
        loss.backward()
        shn = self.splats["shN"]
        if shn.grad is None and shn.numel():
            # degree 0 does not use shN: a zero gradient keeps Adam's step count (and so its
            # bias correction) the same as when the full coefficients went through autograd
            shn.grad = torch.zeros_like(shn)
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
        if self.max_gaussians and len(self.splats["means"]) > self.max_gaussians:
            self.prune_to(self.max_gaussians)
        self.step += 1
        return {"loss": float(loss.detach()), "gaussians": float(len(self.splats["means"]))}

    def set_max_gaussians(self, n: int, *, prune: bool = False) -> None:
        """Change the cap on the Gaussian count (0: none); MCMC's own cap follows it. With
        `prune`, Gaussians over the new cap are dropped now (:meth:`prune_to`), not at the
        end of the next step (what the memory tiers need before they save a checkpoint)."""
        self.max_gaussians = int(n)
        if self.mcmc:
            self.strategy.cap_max = int(n) or 1_000_000
        if prune and n and len(self.splats["means"]) > n:
            self.prune_to(int(n))

    def _per_gaussian_state(self) -> dict[str, torch.Tensor]:
        """The entries of the strategy state indexed by Gaussian (None entries left out)."""
        from .strategy import PER_GAUSSIAN_STATE

        keys = PER_GAUSSIAN_STATE["mcmc" if self.mcmc else "default"]
        return {k: v for k, v in self.strategy_state.items()
                if k in keys and isinstance(v, torch.Tensor)}

    def prune_to(self, n: int) -> None:
        """Keep the `n` most opaque Gaussians (the cap, and the cap of the memory tiers).

        Only the per-Gaussian entries of the strategy state are cut with the parameters:
        gsplat's ``ops.remove`` indexes every tensor of the state it is given, and MCMC's
        ``binoms`` [51, 51] is not per Gaussian (an IndexError on the CPU, a device-side
        assert that poisons the CUDA context).
        """
        from gsplat.strategy.ops import remove

        op = self.splats["opacities"].detach()
        drop = torch.ones_like(op, dtype=torch.bool)
        drop[torch.topk(op, n).indices] = False
        per = self._per_gaussian_state()
        remove(self.splats, self.optimizers, per, drop)
        self.strategy_state.update(per)

    def inconsistency(self) -> str | None:
        """What is inconsistent in the current state, or None: parameters of different lengths,
        Adam moments of another shape than their parameter, per-Gaussian strategy state of
        another length (what an exception in the middle of a densification leaves)."""
        for k, o in self.optimizers.items():
            held = [p for g in o.param_groups for p in g["params"]]
            if k not in self.splats or len(held) != 1 or held[0] is not self.splats[k]:
                return f"the optimizer of {k} does not hold the current {k} parameter"
        return _inconsistency(
            dict(self.splats.items()),
            {k: o.state.get(self.splats[k], {}) for k, o in self.optimizers.items()},
            self._per_gaussian_state(),
        )

    @torch.no_grad()
    def evaluate(self, views: list[TrainView] | None = None) -> dict[str, float]:
        """Mean PSNR (dB) and SSIM over `views` (default: the held-out views), masked."""
        views = self.eval_views if views is None else views
        if not views:
            return {}
        ps, ss = [], []
        with no_tf32():
            for v in views:
                colors, _, _ = self.render(v.camera)
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
        """Everything needed to resume exactly, written atomically (temp file + rename).

        Tensors are saved from the device they live on; :meth:`load_checkpoint` maps them to
        the CPU first, so a checkpoint of a CUDA run resumes on the CPU and the other way
        round. ``torch_rng`` is the CPU generator, ``cuda_rng`` the CUDA generator of the
        training device (None off CUDA).
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        rng = torch_rng_states(self.device)
        torch.save(
            {
                "step": self.step,
                "config": asdict(self.cfg), "max_gaussians": self.max_gaussians,
                "splats": self.splats.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "scheduler": self.scheduler.state_dict(),
                "strategy_state": self.strategy_state,
                "rng": self.rng.bit_generator.state,
                "order": [int(i) for i in self._order],
                "torch_rng": rng["cpu"],
                "cuda_rng": rng["cuda"],
            },
            tmp,
        )
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint of :meth:`save_checkpoint` (the Gaussian count may differ).

        The file is read to the CPU (``map_location="cpu"``: the random states must stay CPU
        ByteTensors) and checked completely before anything of this trainer changes; then
        parameters, Adam moments and the strategy state move to this trainer's device.

        Raises:
            CheckpointError: the file does not load (torn, truncated, corrupt), lacks an
                entry, or is inconsistent (see :meth:`inconsistency`); the trainer is
                unchanged then.
        """
        path = Path(path)
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same problem
            raise CheckpointError(f"{path}: does not load ({type(e).__name__}: {e})") from None
        if not isinstance(ck, dict) or any(k not in ck for k in CHECKPOINT_KEYS):
            missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
            raise CheckpointError(f"{path}: not a training checkpoint (missing {missing})")
        dev = self.device
        try:
            loaded = {k: torch.as_tensor(v) for k, v in dict(ck["splats"]).items()}
            if set(loaded) != set(self.splats.keys()):
                raise CheckpointError(f"{path}: parameters {sorted(loaded)}, expected "
                                      f"{sorted(self.splats.keys())}")
            for k, v in loaded.items():
                if v.shape[1:] != self.splats[k].shape[1:]:
                    raise CheckpointError(f"{path}: {k} is {tuple(v.shape)}, expected "
                                          f"[N, {', '.join(map(str, self.splats[k].shape[1:]))}]")
            moments = {}
            for k in loaded:
                st = dict(ck["optimizers"][k].get("state", {}))
                moments[k] = dict(st.get(0, {}))
            from .strategy import PER_GAUSSIAN_STATE

            keys = PER_GAUSSIAN_STATE["mcmc" if self.mcmc else "default"]
            per = {k: v for k, v in dict(ck["strategy_state"]).items()
                   if k in keys and isinstance(v, torch.Tensor)}
            bad = _inconsistency(loaded, moments, per)
            if bad:
                raise CheckpointError(f"{path}: inconsistent state: {bad}")
            order = [int(i) for i in ck["order"]]
            if any(not 0 <= i < len(self.train_views) for i in order):
                raise CheckpointError(f"{path}: view order refers to views this project lacks")
            splats = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(loaded[k].to(dev)) for k in self.splats.keys()})
            optimizers = make_optimizers(splats, self.scene_scale)
            for k, o in optimizers.items():
                o.load_state_dict(ck["optimizers"][k])  # moves the moments to the param's device
            scheduler = means_lr_scheduler(optimizers["means"], self.cfg.steps)
            scheduler.load_state_dict(ck["scheduler"])
            strategy_state = {k: v.to(dev) if isinstance(v, torch.Tensor) else v
                              for k, v in dict(ck["strategy_state"]).items()}
            rng = np.random.default_rng()
            rng.bit_generator.state = ck["rng"]
            cpu_rng, cuda_rng = ck["torch_rng"], ck.get("cuda_rng")
            if not isinstance(cpu_rng, torch.Tensor):
                raise CheckpointError(f"{path}: no CPU random state")
            step = int(ck["step"])
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed entry of any kind
            raise CheckpointError(f"{path}: malformed ({type(e).__name__}: {e})") from None
        self.splats = splats
        self.optimizers = optimizers
        self.scheduler = scheduler
        self.strategy_state = strategy_state
        self.rng = rng
        self._order = order
        restore_torch_rng(cpu_rng, cuda_rng, dev)
        self.step = step


def _inconsistency(params: dict[str, torch.Tensor], moments: dict[str, dict[str, Any]],
                   per_gaussian: dict[str, torch.Tensor]) -> str | None:
    """What is inconsistent among parameters {name: [N, ...]}, their Adam moments {name:
    {"exp_avg": ..., "exp_avg_sq": ...}} and per-Gaussian state {name: [N, ...]}, or None."""
    lengths = {k: int(v.shape[0]) if v.dim() else -1 for k, v in params.items()}
    if len(set(lengths.values())) > 1:
        return "parameters of different lengths (" + ", ".join(
            f"{k} {n}" for k, n in lengths.items()) + ")"
    n = next(iter(lengths.values()), 0)
    for k, m in moments.items():
        for key in ("exp_avg", "exp_avg_sq"):
            v = m.get(key)
            if isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(params[k].shape):
                return (f"Adam {key} of {k} is {tuple(v.shape)}, the parameter "
                        f"{tuple(params[k].shape)}")
    for k, v in per_gaussian.items():
        if v.shape[0] != n:
            return f"strategy state {k} has {v.shape[0]} entries for {n} Gaussians"
    return None
