"""4D densification and pruning for 4D-Rotor GS (gsplat strategy interface, 4D parameters).

gsplat's ``DefaultStrategy`` splits in 3D and knows nothing about time, so this strategy re-implements the
official 4D-Rotor GS refinement with gsplat's conventions (a dataclass of hyper-parameters, a state dict passed
back every step, ``step_pre_backward`` / ``step_post_backward``; the parameter surgery uses ``gsplat.strategy.ops``
so the optimizers follow the new tensors).

Every step (before ``refine_stop_iter``), for the Gaussians rendered (``radii > 0``) in any view of the step:

- ``grad2d += |dL/d means2d|`` in NDC units (pixels * size / 2, as 3DGS; the largest over the step's views, as
  the official batched code), ``count += 1``;
- ``grad_t += dL/d mu_t`` (signed, as the official code), ``count_t += 1``;
- ``max_radii = max(max_radii, radii)`` (pixels).

``info`` is the rasteriser's meta dict of one view, or ``{"views": [meta, ...]}`` for a batch of views; each
meta may carry :data:`RENDERED_IDS_KEY` when only some Gaussians were rasterised.

Every ``refine_every`` steps after ``refine_start_iter`` and before ``refine_stop_iter``:

- *split* (into ``n_split_samples`` new Gaussians, sampled from the 4D Gaussian itself: ``xyzt + R(rotor) (s * n)``,
  ``n ~ N(0, I_4)``, log-scales minus ``log(split_scale_factor)``; the original is removed) when
  ``(grad2d/count >= grad_threshold and max(sx, sy, sz) > percent_dense_xy * spatial_extent)`` or
  ``(|grad_t/count_t| >= grad_threshold_t and st > percent_dense_t * temporal_extent)``;
- *duplicate* (an exact copy) under the same gradient tests with the scales at or below those limits;
- *prune* opacity ``< prune_opacity``, and before ``prune_big_stop_iter`` also ``max_radii > prune_screen_radius``
  or ``max(sx, sy, sz) > prune_scale_fraction * spatial_extent``;
- every ``reset_every`` steps, clamp opacities to ``<= reset_opacity`` (optimizer moments zeroed).

The statistics restart after each refinement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Union

import torch
from gsplat.strategy.ops import _update_param_with_optimizer, remove, reset_opa
from torch import Tensor

from ng_methods.rotor4d.rotor import rotor_to_rotation
from ng_methods.splat.view_gradients import ndc_view_gradients

__all__ = ["Rotor4DStrategy", "RENDERED_IDS_KEY"]

RENDERED_IDS_KEY = "rendered_ids"
"""``info`` key: indices (into all Gaussians) of the Gaussians passed to the rasteriser (the temporally kept ones)."""

Params = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]


@dataclass
class Rotor4DStrategy:
    """Hyper-parameters of the 4D refinement (defaults: official D-NeRF values); state lives in a dict."""

    grad_threshold: float = 5e-5
    """Mean screen-space (NDC) gradient norm above which a Gaussian is densified."""
    grad_threshold_t: float = 5e-5
    """Mean |gradient of the temporal centre| above which a Gaussian is densified."""
    percent_dense_xy: float = 0.01
    """Split (not duplicate) spatially when the largest spatial scale exceeds this fraction of the spatial extent."""
    percent_dense_t: float = 0.2
    """Split (not duplicate) temporally when the temporal scale exceeds this fraction of ``temporal_extent``."""
    temporal_extent: float = 5.0
    """T_ext of the official code (5 for D-NeRF, 10 for N3V)."""
    spatial_extent: float = 1.0
    """Scene extent the spatial thresholds are relative to (set by the model)."""
    n_split_samples: int = 2
    """How many Gaussians a split one becomes."""
    split_scale_factor: float = 1.6
    """Scales of split Gaussians are divided by this."""
    refine_start_iter: int = 500
    """No refinement up to this step."""
    refine_stop_iter: int = 15000
    """No refinement (and no statistics) from this step."""
    refine_every: int = 100
    """Refine every this many steps."""
    reset_every: int = 3000
    """Clamp opacities every this many steps (within the refinement window)."""
    reset_opacity: float = 0.01
    """Value opacities are clamped to."""
    prune_opacity: float = 0.005
    """Gaussians below this opacity are removed at each refinement."""
    prune_screen_radius: float = 20.0
    """Before ``prune_big_stop_iter``: remove Gaussians whose screen radius exceeded this many pixels."""
    prune_scale_fraction: float = 0.1
    """Before ``prune_big_stop_iter``: remove Gaussians larger than this fraction of the spatial extent."""
    prune_big_stop_iter: int = 3000
    """Stop removing big Gaussians at this step."""
    absgrad: bool = False
    """Use gsplat's absgrad for the screen-space gradient (the official code uses the plain gradient)."""

    # ------------------------------------------------------------------------------------------------ state
    def initialize_state(self, scene_scale: float = 1.0) -> Dict[str, Any]:
        """Running statistics (created lazily at the first step, one entry per Gaussian)."""
        return {"grad2d": None, "count": None, "grad_t": None, "count_t": None, "max_radii": None,
                "num_split": 0, "num_duplicated": 0, "num_pruned": 0}

    def _reset_statistics(self, state: Dict[str, Any], num: int, device: torch.device) -> None:
        for key in ("grad2d", "count", "grad_t", "count_t", "max_radii"):
            state[key] = torch.zeros(num, device=device)

    # ------------------------------------------------------------------------------------------------ hooks
    def step_pre_backward(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer],
                          state: Dict[str, Any], step: int, info: Dict[str, Any]) -> None:
        """Keep the screen-space means' gradient (read after backward)."""
        if info["means2d"].requires_grad:  # not under torch.no_grad() renders of a model left in train mode
            info["means2d"].retain_grad()

    def step_post_backward(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer],
                           state: Dict[str, Any], step: int, info: Dict[str, Any], packed: bool = False) -> None:
        """Accumulate statistics, and refine on schedule."""
        if step >= self.refine_stop_iter:
            return
        self._update_statistics(params, state, info)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            self.refine(params, optimizers, state, step)

    @torch.no_grad()
    def _update_statistics(self, params: Params, state: Dict[str, Any], info: Dict[str, Any]) -> None:
        """One observation per step: over the views of a batch, the largest screen gradient and radius (as the
        official batched code), the step's temporal-centre gradient, counted where any view drew the Gaussian."""
        num = params["means"].shape[0]
        device = params["means"].device
        if state["grad2d"] is None or state["grad2d"].shape[0] != num:
            self._reset_statistics(state, num, device)
        step_grad = torch.zeros(num, device=device)
        step_radii = torch.zeros(num, device=device)
        seen_any = torch.zeros(num, dtype=torch.bool, device=device)
        for view in info.get("views", [info]):
            grads = ndc_view_gradients(view, "means2d", self.absgrad)
            if grads is None:
                continue
            rendered_ids = view.get(RENDERED_IDS_KEY)
            if rendered_ids is None:
                rendered_ids = torch.arange(num, device=device)
            radii = view["radii"]
            if radii.dim() == 3:  # newer gsplat: per-axis radii
                radii = radii.max(dim=-1).values
            for cam in range(radii.shape[0]):
                seen = radii[cam] > 0
                ids = rendered_ids[seen]
                step_grad[ids] = torch.maximum(step_grad[ids], grads[cam][seen].norm(dim=-1))
                step_radii[ids] = torch.maximum(step_radii[ids], radii[cam][seen].float())
                seen_any[ids] = True
        state["grad2d"][seen_any] += step_grad[seen_any]
        state["count"][seen_any] += 1
        state["max_radii"] = torch.maximum(state["max_radii"], step_radii)
        if params["times"].grad is not None:
            state["grad_t"][seen_any] += params["times"].grad[seen_any, 0]
            state["count_t"][seen_any] += 1

    # ------------------------------------------------------------------------------------------------ refine
    @torch.no_grad()
    def refine(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any],
               step: int) -> None:
        """Split / duplicate / prune / reset (see the module docstring), then restart the statistics."""
        num = params["means"].shape[0]
        device = params["means"].device
        if state["grad2d"] is None:
            self._reset_statistics(state, num, device)
        grad_xy = torch.nan_to_num(state["grad2d"] / state["count"], nan=0.0)
        grad_t = torch.nan_to_num(state["grad_t"] / state["count_t"], nan=0.0).abs()
        spatial = torch.exp(params["scales"]).max(dim=-1).values
        temporal = torch.exp(params["scales_t"])[:, 0]
        high_xy = grad_xy >= self.grad_threshold
        high_t = grad_t >= self.grad_threshold_t
        big_xy = spatial > self.percent_dense_xy * self.spatial_extent
        big_t = temporal > self.percent_dense_t * self.temporal_extent
        split = (high_xy & big_xy) | (high_t & big_t)
        duplicate = (high_xy & ~big_xy) | (high_t & ~big_t)

        new = self._split_samples(params, split)
        for name, values in self._duplicates(params, duplicate).items():
            new[name] = torch.cat([new[name], values])
        num_new = new["means"].shape[0]
        if num_new:
            _update_param_with_optimizer(
                lambda name, p: torch.nn.Parameter(torch.cat([p, new[name].to(p.dtype)])),
                lambda key, v: torch.cat([v, torch.zeros((num_new, *v.shape[1:]), device=v.device, dtype=v.dtype)]),
                params, optimizers,
            )
        max_radii = torch.cat([state["max_radii"], torch.zeros(num_new, device=device)])
        prune = torch.cat([split, torch.zeros(num_new, dtype=torch.bool, device=device)])
        prune |= torch.sigmoid(params["opacities"].squeeze(-1)) < self.prune_opacity
        if step < self.prune_big_stop_iter:
            prune |= max_radii > self.prune_screen_radius
            spatial_all = torch.exp(params["scales"]).max(dim=-1).values
            prune |= spatial_all > self.prune_scale_fraction * self.spatial_extent
        if prune.any():
            remove(params, optimizers, {}, prune)
        if step % self.reset_every == 0:
            reset_opa(params, optimizers, {}, value=self.reset_opacity)
        state["num_split"] += int(split.sum())
        state["num_duplicated"] += int(duplicate.sum())
        state["num_pruned"] += int(prune.sum())
        self._reset_statistics(state, params["means"].shape[0], device)

    def _split_samples(self, params: Params, mask: Tensor) -> Dict[str, Tensor]:
        """``n_split_samples`` children per masked Gaussian, sampled from its 4D distribution."""
        reps = self.n_split_samples
        sel = torch.where(mask)[0]
        scales4 = torch.exp(torch.cat([params["scales"][sel], params["scales_t"][sel]], dim=-1))  # [S, 4]
        noise = torch.randn(reps, *scales4.shape, device=scales4.device) * scales4  # [reps, S, 4]
        rotation = rotor_to_rotation(params["rotors"][sel])  # [S, 4, 4], unnormalised as in the official code
        offsets = torch.einsum("sij,rsj->rsi", rotation, noise).reshape(-1, 4)
        centres = torch.cat([params["means"][sel], params["times"][sel]], dim=-1).repeat(reps, 1)
        xyzt = centres + offsets
        shrink = math.log(self.split_scale_factor)
        out: Dict[str, Tensor] = {}
        for name, p in params.items():
            values = p[sel]
            out[name] = values.repeat(reps, *([1] * (values.dim() - 1)))
        out["means"] = xyzt[:, :3]
        out["times"] = xyzt[:, 3:4]
        out["scales"] = out["scales"] - shrink
        out["scales_t"] = out["scales_t"] - shrink
        return {name: v.detach() for name, v in out.items()}

    @staticmethod
    def _duplicates(params: Params, mask: Tensor) -> Dict[str, Tensor]:
        sel = torch.where(mask)[0]
        return {name: p[sel].detach() for name, p in params.items()}
