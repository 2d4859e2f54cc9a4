"""Gaussian-Flow's released per-scene D-NeRF recipes (Linyou/D3DGS ``d3dgs_poly`` @4030d65, ``arguments/dnerf/``).

Each scene file overrides ``arguments/dnerf/dnerf_default.py`` (mmcv ``_base_`` merge), which overrides the argument
defaults of ``arguments/__init__.py``. :data:`RECIPES` holds the merged values that matter for training, one
:class:`GaussianFlowRecipe` per scene; ``"default"`` is ``dnerf_default.py`` itself. ``method_configs.gaussian_flow``
builds a trainer config from a recipe (``gaussian-flow`` is the lego recipe).

The released loss switches ``knn_loss`` and ``get_moving_loss`` map to the model's ``parameter_knn_weight`` (0.1)
and ``moving_loss_weight`` (1); see ``docs/gaussian-flow.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict


@dataclass(frozen=True)
class GaussianFlowRecipe:
    """One scene's released training recipe (merged ``arguments/dnerf/<scene>.py``)."""

    steps: int = 10_000
    """``iterations`` (also ``position_lr_max_steps``: the position learning rate decays over the whole run)."""
    images_per_step: int = 8
    """``batch_size``: training views rendered per optimisation step."""
    position_order: int = 2
    """``xyz_traj_feat_dim``: DDDM order of the position trajectory."""
    rotation_order: int = 1
    """``rot_traj_feat_dim``: DDDM order of the quaternion trajectory."""
    color_order: int = 2
    """``feature_traj_feat_dim`` with ``feature_dc_trajectory_type = 'fft_poly'``: order of the SH-DC trajectory."""
    sh_rest_order: int = 2
    """Order of the SH-AC (``features_rest``) trajectory: ``feature_traj_feat_dim`` when the scene sets
    ``feature_trajectory_type = 'fft_poly'`` (lego only), else 0 (static AC bands)."""
    rotation_lr: float = 0.005
    """``rotation_lr``: static quaternions and their trajectory (both constant)."""
    densify_until: int = 5_000
    """``densify_until_iter``."""
    densify_grad: float = 5e-5
    """``densify_grad_threshold`` (plain view-space gradient, summed over the step's views)."""
    opacity_reset_interval: int = 3_000
    """``opacity_reset_interval``."""
    time_scale: float = 0.5
    """``factor_t_value`` when ``factor_t`` (else 1)."""
    time_shift: float = 0.1
    """``offset_t_value`` when ``offset_t`` (else 0)."""
    time_noise: float = 0.0
    """Std of the annealed time noise: ``offset_width * factor_t_value`` when ``random_noise`` (``offset_width`` is
    0.01 with ``normalize_timestamp = False``), else 0."""
    knn_loss: bool = False
    """``knn_loss``: D3DGS's parameter-KNN loss (weight 0.1 after densification, ``train.py:248-250``)."""
    moving_loss: bool = False
    """``get_moving_loss``: D3DGS's moving loss (weight 1 every step, ``train.py:252-254``)."""


_LEGO = GaussianFlowRecipe()
_SMALL_MOTION = replace(  # bouncingballs, hook, mutant, standup, trex share one file body
    _LEGO, position_order=3, rotation_order=3, color_order=6, sh_rest_order=0, rotation_lr=0.001,
    time_noise=0.005, knn_loss=True,
)

RECIPES: Dict[str, GaussianFlowRecipe] = {
    "default": replace(  # dnerf_default.py (factor_t / offset_t off, normalize_timestamp on, random_noise off)
        _LEGO, steps=30_000, images_per_step=1, position_order=5, rotation_order=4, color_order=6, sh_rest_order=0,
        densify_until=15_000, densify_grad=1e-4, time_scale=1.0, time_shift=0.0,
    ),
    "lego": _LEGO,
    "bouncingballs": _SMALL_MOTION,
    "hook": _SMALL_MOTION,
    "mutant": _SMALL_MOTION,
    "standup": _SMALL_MOTION,
    "trex": _SMALL_MOTION,
    "hellwarrior": replace(
        _SMALL_MOTION, position_order=2, rotation_order=1, densify_grad=1e-3, time_scale=0.8, time_noise=0.008,
        knn_loss=False,
    ),
    "jumpingjacks": replace(
        _SMALL_MOTION, position_order=8, rotation_order=8, color_order=2, densify_grad=1e-5,
        opacity_reset_interval=5_000, time_scale=0.8, time_noise=0.008, knn_loss=False, moving_loss=True,
    ),
}
"""Released D-NeRF recipes by scene name (``arguments/dnerf/<scene>.py``; ``"default"``: ``dnerf_default.py``)."""
