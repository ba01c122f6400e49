"""Our wiring of gsplat's densification strategies: the opacity reset gsplat 1.5.3 never does.

gsplat 1.5.3's ``DefaultStrategy.step_post_backward`` tests ``step % self.reset_every == 0 &
step > 0``. Python binds ``&`` before the comparisons, so that is the chain
``(step % reset_every == 0) and (0 > 0)``: always False, and the periodic opacity reset of 3DGS
(Kerbl et al. 2023, Sec. 5.2: every 3000 steps opacities are clamped near zero so floaters can be
pruned) never happens on any device (gsplat issue #797; fixed upstream by gsplat PR #776, after
the 1.5.3 release). :class:`ResettingDefaultStrategy` adds the reset with the intended condition
(``step > 0 and step % reset_every == 0``, before ``refine_stop_iter``, after densification, to
``2 x prune_opa`` through gsplat's own ``reset_opa``). On a gsplat that resets itself the second
reset is a no-op (it clamps to the same value and zeroes the same Adam moments), so this class
can stay until the pinned gsplat carries the fix.

Imports gsplat (only :func:`splatstudio.train.trainer.make_strategy` imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa

PER_GAUSSIAN_STATE: dict[str, tuple[str, ...]] = {
    "default": ("grad2d", "count", "radii"),
    "mcmc": (),
}
"""Entries of each strategy's running state that hold one value per Gaussian (indexed like the
parameters); the others (MCMC's ``binoms`` [n_max, n_max], ``scene_scale``) must never be
indexed by Gaussian (gsplat's ``ops.remove`` indexes every tensor it is given)."""


@dataclass
class ResettingDefaultStrategy(DefaultStrategy):
    """``gsplat.strategy.DefaultStrategy`` with its periodic opacity reset working (see the
    module docstring; gsplat #797)."""

    def step_post_backward(
        self,
        params: Any,
        optimizers: dict[str, Any],
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
        packed: bool = False,
    ) -> None:
        """gsplat's densification step, then the opacity reset every ``reset_every`` steps
        (step > 0, before ``refine_stop_iter``) to ``2 * prune_opa`` (post-sigmoid)."""
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if step < self.refine_stop_iter and step > 0 and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state,
                      value=self.prune_opa * 2.0)
