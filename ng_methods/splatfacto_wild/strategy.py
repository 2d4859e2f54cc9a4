"""Densification for Splatfacto-W: gsplat's ``DefaultStrategy`` plus culling after splitting stops.

The official model (``continue_cull_post_densification=True``) keeps culling every ``refine_every`` steps once
splitting has stopped: Gaussians whose opacity fell below the cull threshold (0.1, much higher than 3DGS's 0.005:
floaters that only explain one photo's transient content fade out and are removed) and Gaussians whose world
scale exceeds ``prune_scale3d``. ``DefaultStrategy`` returns early after ``refine_stop_iter``, so this subclass adds
that step. Screen-size culling is not repeated there: the official loop stops it at 15k steps, before splitting
stops at 20k, and the running screen-size state is no longer updated after ``refine_stop_iter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Union

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import remove


@dataclass
class WildStrategy(DefaultStrategy):
    """``DefaultStrategy`` that keeps culling (opacity and world scale) after ``refine_stop_iter``."""

    cull_after_refine_stop: bool = True
    """Keep removing transparent and huge Gaussians every ``refine_every`` steps once splitting has stopped."""

    def step_post_backward(
        self,
        params: Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict],
        optimizers: Dict[str, torch.optim.Optimizer],
        state: Dict[str, Any],
        step: int,
        info: Dict[str, Any],
        packed: bool = False,
    ) -> None:
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if self.cull_after_refine_stop and step >= self.refine_stop_iter and step % self.refine_every == 0:
            self.cull(params, optimizers, state)

    @torch.no_grad()
    def cull(
        self,
        params: Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict],
        optimizers: Dict[str, torch.optim.Optimizer],
        state: Dict[str, Any],
    ) -> int:
        """Remove Gaussians with opacity < ``prune_opa`` or max scale > ``prune_scale3d * scene_scale``."""
        is_culled = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        too_big = torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        is_culled |= too_big
        n_culled = int(is_culled.sum())
        if 0 < n_culled < len(is_culled):  # never remove every Gaussian: the rasteriser needs at least one
            remove(params=params, optimizers=optimizers, state=state, mask=is_culled)
        return n_culled
