"""Densification for Splatfacto-W: gsplat's ``DefaultStrategy`` with the official loop's rules where they differ.

The official model (``splatfactow/splatfactow_model.py`` @119a3bf, ``after_train`` / ``refinement_after`` /
``cull_gaussians``) differs from gsplat's ``DefaultStrategy`` in five ways, each a field here (defaults keep gsplat's
behaviour; the ``splatfacto-wild`` model turns on the official ones):

* ``split_rule="official"``: split = high gradient AND (large world scale OR screen size > ``grow_scale2d``);
  gsplat splits (high gradient AND large) OR screen size > ``grow_scale2d`` (no gradient test for big splats).
  Duplication (high gradient AND small) is the same in both.
* ``grad_normalization="official"``: the accumulated pixel-space gradient norm is scaled by ``0.5 * max(W, H)`` on
  both axes and averaged over (views + 1) (upstream's visibility counter starts at one); gsplat scales x by
  ``W / 2`` and y by ``H / 2`` and averages over the views.
* ``reset_offset``: opacities are reset at steps with ``step % reset_every == reset_offset`` (official 100, one
  refinement after the reset boundary; gsplat 0), only after ``refine_start_iter`` and before ``refine_stop_iter``.
* ``reset_stats_every_refine``: the gradient / screen-size statistics are cleared at every refinement step after
  ``refine_start_iter``, also those skipped by the pause after a reset (official); gsplat clears them only when
  it grows, so the first growth after a pause sees statistics accumulated across the opacity reset.
* ``cull_after_refine_stop`` (official ``continue_cull_post_densification=True``): once splitting has stopped,
  Gaussians with opacity < ``prune_opa`` (0.1, much higher than 3DGS's 0.005: floaters explaining one photo's
  transient content fade out and are removed) or world scale > ``prune_scale3d`` are still removed every
  ``refine_every`` steps. Screen-size culling is not repeated there: the official loop stops it at 15k steps,
  before splitting stops at 20k.

The official pause (densify only when ``step % reset_every > #images + refine_every``) is gsplat's
``step % reset_every >= pause_refine_after_reset`` with ``pause_refine_after_reset = #images + refine_every + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Literal, Tuple, Union

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import duplicate, remove, reset_opa, split

Params = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]


@dataclass
class WildStrategy(DefaultStrategy):
    """``DefaultStrategy`` with Splatfacto-W's split rule, reset timing and culling after ``refine_stop_iter``."""

    cull_after_refine_stop: bool = True
    """Keep removing transparent and huge Gaussians every ``refine_every`` steps once splitting has stopped."""
    split_rule: Literal["official", "gsplat"] = "gsplat"
    """"official": high gradient and (large or big on screen); "gsplat": (high gradient and large) or big on screen."""
    grad_normalization: Literal["official", "gsplat"] = "gsplat"
    """"official": gradient x and y scaled by max(W, H) / 2, averaged over views + 1; "gsplat": by W / 2 and H / 2,
    averaged over views."""
    reset_offset: int = 0
    """Reset opacities when ``step % reset_every == reset_offset`` (official 100, gsplat 0)."""
    reset_stats_every_refine: bool = False
    """Clear the densification statistics at every refinement step, also while densification pauses (official)."""

    def step_post_backward(
        self,
        params: Params,
        optimizers: Dict[str, torch.optim.Optimizer],
        state: Dict[str, Any],
        step: int,
        info: Dict[str, Any],
        packed: bool = False,
    ) -> None:
        if step >= self.refine_stop_iter:
            if self.cull_after_refine_stop and step % self.refine_every == 0:
                self.cull(params, optimizers, state)
            return
        self._update_state(params, state, info, packed=packed)
        refining = step > self.refine_start_iter and step % self.refine_every == 0
        if refining and step % self.reset_every >= self.pause_refine_after_reset:
            self._grow_gs(params, optimizers, state, step)
            self._prune_gs(params, optimizers, state, step)
            self._clear_stats(state)
        elif refining and self.reset_stats_every_refine:
            self._clear_stats(state)
        if step % self.reset_every == self.reset_offset and (self.reset_offset == 0 or step > self.refine_start_iter):
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)

    def _update_state(self, params: Params, state: Dict[str, Any], info: Dict[str, Any], packed: bool = False) -> None:
        if self.grad_normalization == "official":  # both axes by max(W, H) / 2; radii are normalised by it anyway
            longest = max(info["width"], info["height"])
            info = {**info, "width": longest, "height": longest}
        super()._update_state(params, state, info, packed=packed)

    def _clear_stats(self, state: Dict[str, Any]) -> None:
        for key in ("grad2d", "count", "radii"):
            if state.get(key) is not None:
                state[key].zero_()

    @torch.no_grad()
    def split_and_duplicate_masks(self, params: Params, state: Dict[str, Any], step: int) -> Tuple[torch.Tensor, ...]:
        """``(is_duplicated, is_split)`` under ``split_rule``."""
        count = state["count"] + 1 if self.grad_normalization == "official" else state["count"].clamp_min(1)
        grads = state["grad2d"] / count
        is_grad_high = grads > self.grow_grad2d
        is_small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli = is_grad_high & is_small
        is_split = ~is_small
        if self.split_rule == "gsplat":
            is_split = is_split & is_grad_high
        if step < self.refine_scale2d_stop_iter:
            is_split = is_split | (state["radii"] > self.grow_scale2d)
        if self.split_rule == "official":
            is_split = is_split & is_grad_high
        return is_dupli, is_split

    @torch.no_grad()
    def _grow_gs(
        self, params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any], step: int
    ) -> Tuple[int, int]:
        is_dupli, is_split = self.split_and_duplicate_masks(params, state, step)
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli > 0:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        # Gaussians added by duplication are not split.
        is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=is_split.device)])
        if n_split > 0:
            split(params=params, optimizers=optimizers, state=state, mask=is_split,
                  revised_opacity=self.revised_opacity)
        return n_dupli, n_split

    @torch.no_grad()
    def cull(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any]) -> int:
        """Remove Gaussians with opacity < ``prune_opa`` or max scale > ``prune_scale3d * scene_scale``."""
        is_culled = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        too_big = torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        is_culled |= too_big
        n_culled = int(is_culled.sum())
        if 0 < n_culled < len(is_culled):  # never remove every Gaussian: the rasteriser needs at least one
            remove(params=params, optimizers=optimizers, state=state, mask=is_culled)
        return n_culled
