"""3DGS densification as Gaussian-Flow's released code runs it, on gsplat's ``DefaultStrategy``.

gsplat's ``DefaultStrategy`` already clones / splits (scales / 1.6, samples from the canonical Gaussian) and prunes
like 3DGS; what Gaussian-Flow's ``train.py`` (Linyou/D3DGS ``d3dgs_poly``) does differently, and this subclass
adds:

- **batches of views**: ``info`` may be ``{"views": [meta, ...]}``; the step's NDC view-space gradients of all
  views are *summed as vectors* before the norm, counted once per step where any view drew the Gaussian
  (``train.py`` sums ``viewspace_points[i].grad`` then calls ``add_densification_stats`` once);
- **opacity reset value** ``reset_opacity`` (released: ``min(opacity, 0.1)``), not ``2 * prune_opa``, at every
  ``reset_every`` steps and at ``extra_reset_steps`` (released: also at ``densify_from_iter`` on white
  backgrounds), only before ``refine_stop_iter``; no pause of refinement after a reset;
- **big-Gaussian pruning** after the first reset (``step > reset_every``): world scale above
  ``prune_scale3d * scene_scale``, and, when ``prune_radius_px`` is set, screen radius above that many *pixels*
  (max over the views since the last refinement; the radii are zeroed first when the step grew Gaussians). The
  released 20 px test never fires: ``densification_postfix`` zeroes ``max_radii2D`` at every densification, which
  runs (even when nothing grows) right before each pruning (3DGS issue #123), so the model passes None. The
  screen rule never splits (3DGS has no screen-size split).

``state["scene_scale"]`` is the released ``cameras_extent`` (set by the model from the training cameras).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import remove, reset_opa

from ng_methods.splat.view_gradients import ndc_view_gradients


@dataclass
class GaussianFlowStrategy(DefaultStrategy):
    """``DefaultStrategy`` with the released Gaussian-Flow rules (see the module docstring)."""

    reset_opacity: float = 0.1
    """Opacities are clamped to at most this at each reset."""
    extra_reset_steps: Tuple[int, ...] = ()
    """Further reset steps (released white-background rule: ``densify_from_iter``)."""
    prune_radius_px: Optional[float] = None
    """After the first reset, prune Gaussians whose screen radius exceeded this many pixels (None: never)."""

    def step_pre_backward(self, params, optimizers, state, step, info) -> None:
        for view in info.get("views", [info]):
            if view[self.key_for_gradient].requires_grad:
                view[self.key_for_gradient].retain_grad()

    def step_post_backward(self, params, optimizers, state, step, info, packed: bool = False) -> None:
        if step >= self.refine_stop_iter:
            return
        self._update_state(params, state, info, packed=packed)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            if sum(self._grow_gs(params, optimizers, state, step)):
                state["radii"].zero_()  # released densification_postfix zeroes max_radii2D before pruning
            self._prune_gs(params, optimizers, state, step)
            state["grad2d"].zero_()
            state["count"].zero_()
            state["radii"].zero_()
        if step > 0 and (step % self.reset_every == 0 or step in self.extra_reset_steps):
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.reset_opacity)

    @torch.no_grad()
    def _update_state(self, params, state: Dict[str, Any], info: Dict[str, Any], packed: bool = False) -> None:
        num = len(params["means"])
        device = params["means"].device
        for key in ("grad2d", "count", "radii"):
            if state.get(key) is None or state[key].shape[0] != num:
                state[key] = torch.zeros(num, device=device)
        grad_sum = torch.zeros(num, 2, device=device)
        radii_max = torch.zeros(num, device=device)
        for view in info.get("views", [info]):
            grads = ndc_view_gradients(view, self.key_for_gradient, self.absgrad)
            if grads is None:
                continue
            radii = view["radii"]
            if radii.dim() == 3:  # newer gsplat: per-axis radii
                radii = radii.max(dim=-1).values
            ids = view.get("rendered_ids")
            for cam in range(radii.shape[0]):
                target = slice(None) if ids is None else ids
                grad_sum[target] += grads[cam] * (radii[cam] > 0)[:, None]
                radii_max[target] = torch.maximum(radii_max[target], radii[cam].float())
        seen = radii_max > 0
        state["grad2d"][seen] += grad_sum[seen].norm(dim=-1)
        state["count"][seen] += 1
        state["radii"] = torch.maximum(state["radii"], radii_max)

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state, step) -> Tuple[int, int]:
        """Clone, then split, as ``DefaultStrategy`` (threshold inclusive as 3DGS: ``>=``)."""
        refine_scale2d_stop_iter, self.refine_scale2d_stop_iter = self.refine_scale2d_stop_iter, 0
        grow_grad2d = self.grow_grad2d
        self.grow_grad2d = torch.nextafter(torch.tensor(grow_grad2d), torch.tensor(-1.0)).item()
        try:
            return super()._grow_gs(params, optimizers, state, step)
        finally:
            self.refine_scale2d_stop_iter, self.grow_grad2d = refine_scale2d_stop_iter, grow_grad2d

    @torch.no_grad()
    def _prune_gs(self, params, optimizers, state, step) -> int:
        prune = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        if step > self.reset_every:
            scale = torch.exp(params["scales"]).max(dim=-1).values
            prune |= scale > self.prune_scale3d * state["scene_scale"]
            if self.prune_radius_px is not None:
                prune |= state["radii"] > self.prune_radius_px
        count = int(prune.sum())
        if count:
            remove(params=params, optimizers=optimizers, state=state, mask=prune)
        return count
