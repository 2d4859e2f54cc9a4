"""The original 3DGS densification rule (Kerbl et al. 2023, graphdeco-inria/gaussian-splatting) for the splat base.

Splatfacto's schedule differs from 3DGS (absgrad above 8e-4, world-size cull at 0.5, a split of everything wider
than 5% of the screen until step 4000, and a pause after each opacity reset). Methods that follow an INRIA-based
official code (C3DGS) use :class:`ThreeDGSStrategy` instead: gsplat's ``DefaultStrategy`` with the 3DGS values, so
the parameter surgery (``gsplat.strategy.ops``) and the running state are gsplat's.

Every step before ``refine_stop_iter`` (15k) the Gaussians drawn in the view (radius > 0) accumulate the norm of the
plain (not absolute) screen-space gradient of their centre, in NDC units (pixels x size / 2, as INRIA's rasteriser
reports it), and a view count. Every ``refine_every`` (100) steps after ``refine_start_iter`` (500):

- the mean gradient ``grad2d / count`` above ``grow_grad2d`` (2e-4) grows a Gaussian: it is duplicated when its
  largest scale is at most ``grow_scale3d`` (0.01, ``percent_dense``) x the scene extent, else split into two
  samples of itself with the scales divided by 1.6 (the original removed);
- Gaussians with opacity below ``prune_opa`` (0.005) are removed, and after the first opacity reset (step > 3000)
  also those whose largest scale exceeds ``prune_scale3d`` (0.1) x the scene extent;
- there is no pause after an opacity reset (``pause_refine_after_reset = 0``);
- every ``reset_every`` (3000) steps opacities are clamped to at most ``2 x prune_opa`` = 0.01.

The scene extent is ``state["scene_scale"]``: :func:`~ng_methods.splat.extent.camera_extent` of the training
cameras, as 3DGS's ``getNerfppNorm`` radius.

**Screen-size pruning.** INRIA's ``densify_and_prune`` also removes Gaussians whose largest screen radius exceeded
20 px (after step 3000), but it reads ``max_radii2D`` after ``densify_and_clone``/``densify_and_split`` have reset
it to zero (``densification_postfix``), so that test never fires (graphdeco-inria/gaussian-splatting issue 123;
the same in Compact-3DGS ``scene/gaussian_model.py:469-471,511-523`` @c5d761f). The code that produced the papers'
tables therefore prunes by opacity and world size only, and so does this strategy (``refine_scale2d_stop_iter =
0``, which also disables gsplat's split by screen size).

Other differences, all without effect on the rule: gsplat grows when the gradient is ``>`` the threshold (INRIA:
``>=``), and nerfstudio counts steps from 0 and refines after the optimizer step (INRIA: from 1, before it).
"""

from __future__ import annotations

from dataclasses import dataclass

from gsplat.strategy import DefaultStrategy

__all__ = ["ThreeDGSStrategy"]


@dataclass
class ThreeDGSStrategy(DefaultStrategy):
    """gsplat's ``DefaultStrategy`` with the original 3DGS values (see the module docstring)."""

    prune_opa: float = 0.005
    """Remove Gaussians below this opacity; the opacity reset clamps to twice this (0.01, as 3DGS)."""
    grow_grad2d: float = 2e-4
    """Mean screen-space gradient norm (NDC units) above which a Gaussian is duplicated or split."""
    grow_scale3d: float = 0.01
    """``percent_dense``: duplicate at or below this largest scale (x scene extent), split above."""
    prune_scale3d: float = 0.1
    """After the first opacity reset, remove Gaussians larger than this (x scene extent)."""
    refine_scale2d_stop_iter: int = 0
    """0: no screen-size split or prune (INRIA's 20 px prune never fires, see the module docstring)."""
    refine_start_iter: int = 500
    """Refine after this step."""
    refine_stop_iter: int = 15000
    """No refinement, statistics or opacity reset from this step."""
    reset_every: int = 3000
    """Clamp opacities every this many steps."""
    refine_every: int = 100
    """Refine every this many steps."""
    pause_refine_after_reset: int = 0
    """3DGS refines right after an opacity reset (Splatfacto pauses for one pass over the images)."""
    absgrad: bool = False
    """3DGS accumulates the norm of the plain gradient (absgrad is AbsGS / Splatfacto)."""
