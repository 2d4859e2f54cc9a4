"""``GaussianFlowModel``: Gaussian-Flow (Lin et al., CVPR 2024) on the ng-methods splat base.

Every Gaussian carries Dual-Domain Deformation Model coefficients (:mod:`ng_methods.gaussian_flow.dddm`) for its
position, rotation (the unnormalised quaternion) and colour DC, plus a learnable time offset ``tau_i``; scale,
opacity and the higher SH bands are static. All of them live in ``gauss_params``, so gsplat's ``DefaultStrategy``
splits, duplicates and prunes them with the Gaussians and each gets its own optimizer group.

Optional Light4GS-style significance pruning (:mod:`ng_methods.compression.significance`) runs through a training
callback when ``significance_prune_at`` is set (the ``gaussian-flow-compressed`` method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from torch import Tensor
from torch.nn import Parameter

from ng_methods.dynamic.times import camera_time
from ng_methods.gaussian_flow.dddm import dddm_residual, map_time
from ng_methods.gaussian_flow.losses import knn_rigidity_loss, temporal_smoothness_loss
from ng_methods.splat.knn import nearest_neighbours
from ng_methods.splat.model import GaussiansToRender, NGSplatModel, NGSplatModelConfig

# (gauss_params name of the trajectory, static attribute it deforms, attribute width)
TRAJECTORIES = (("means_traj", "means", 3), ("quats_traj", "quats", 4), ("features_dc_traj", "features_dc", 3))


@dataclass
class GaussianFlowModelConfig(NGSplatModelConfig):
    """Gaussian-Flow: Splatfacto's Gaussians with polynomial + Fourier trajectories (D-NeRF defaults)."""

    _target: Type = field(default_factory=lambda: GaussianFlowModel)
    position_order: int = 5
    """DDDM order L of the position trajectory (released D-NeRF default 5; the lego config uses 2)."""
    rotation_order: int = 4
    """DDDM order L of the quaternion trajectory (released D-NeRF default 4; lego 1, i.e. a constant offset)."""
    color_order: int = 6
    """DDDM order L of the colour-DC trajectory (released D-NeRF default 6; lego 2)."""
    time_scale: float = 0.5
    """Global time rescaling ``s`` in ``t' = t*s + o - tau_i`` (released: 0.5 for D-NeRF/lego, 0.8 for DyNeRF)."""
    time_shift: float = 0.1
    """Global time offset ``o`` in ``t' = t*s + o - tau_i`` (released: 0.1)."""
    time_noise: float = 0.0
    """Std of Gaussian noise on the training time, annealed linearly to 0 over ``time_noise_steps`` (released: off)."""
    time_noise_steps: int = 30000
    """Steps over which ``time_noise`` anneals to 0."""
    temporal_smoothness_weight: float = 0.0
    """Weight of ``|D(t'+delta) - sg D(t')|`` on positions (paper; disabled in the released configs, so 0)."""
    temporal_delta: float = 0.01
    """``delta`` of the temporal smoothness and rigidity losses (the released ``offset_width``)."""
    rigidity_weight: float = 0.0
    """Weight of the KNN rigidity loss (paper; disabled in the released configs, so 0)."""
    rigidity_neighbours: int = 20
    """Neighbours per Gaussian in the rigidity loss (released: 20)."""
    rigidity_theta: float = 1e5
    """Neighbour weights ``exp(-theta * d^2)`` from the time-0 distances (released: 1e5)."""
    significance_prune_at: Tuple[float, ...] = ()
    """Fractions of the run's steps at which to prune by Light4GS spatio-temporal significance (empty: never;
    Light4GS prunes at 15k and 18k of 20k, i.e. (0.75, 0.9))."""
    significance_prune_fraction: float = 0.4
    """Fraction of the least significant Gaussians removed at each pruning round (Light4GS: 0.4)."""
    ssim_lambda: float = 0.0
    """SSIM weight of the photometric loss; the released loss is L1 only (its SSIM term is commented out)."""
    background_color: Literal["random", "black", "white"] = "white"
    """D-NeRF scenes are composited on white (the released D-NeRF configs set ``white_bg``)."""
    random_init: bool = True
    """D-NeRF has no SfM points: start from random Gaussians (the released D-NeRF config: 10k random points)."""
    num_random: int = 10000
    """Number of random initial Gaussians."""
    random_scale: float = 2.6
    """Side of the cube the random Gaussians fill (the released config samples radius 1.3)."""
    cull_alpha_thresh: float = 0.005
    """Prune Gaussians below this opacity. gsplat resets opacities to twice this value, so 0.005 gives the released
    reset value 0.01 (the released pruning threshold is 1e-3, which would reset to 0.002)."""
    stop_split_at: int = 15000
    """Stop densifying after this step (released D-NeRF config: 15k)."""


class GaussianFlowModel(NGSplatModel):
    """Splat model whose position, rotation and colour DC follow per-Gaussian DDDM trajectories in time."""

    config: GaussianFlowModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self._knn: Optional[Tuple[Tensor, Tensor]] = None
        self._training_time: Optional[Tensor] = None

    def initial_gaussians(self) -> Dict[str, Parameter]:
        params = super().initial_gaussians()
        n = params["means"].shape[0]
        orders = (self.config.position_order, self.config.rotation_order, self.config.color_order)
        for (name, _, dim), order in zip(TRAJECTORIES, orders):
            params[name] = Parameter(torch.zeros(n, order, dim, 3))  # zero-init: the scene starts static
        params["time_offsets"] = Parameter(torch.zeros(n, 1))
        return params

    # ------------------------------------------------------------------------------------------------ deformation
    def deformed_attributes(
        self, time: Tensor, params: Optional[Dict[str, Tensor]] = None, noise_std: float = 0.0
    ) -> Dict[str, Tensor]:
        """``means``, ``quats`` and ``features_dc`` at the normalised ``time`` (others pass through unchanged)."""
        params = dict(self.gauss_params if params is None else params)
        t = map_time(time.to(params["time_offsets"].device), params["time_offsets"],
                     self.config.time_scale, self.config.time_shift, noise_std)
        for traj_name, name, _ in TRAJECTORIES:
            params[name] = params[name] + dddm_residual(params[traj_name], t)
        return params

    def _time_noise(self) -> float:
        if not self.training or self.config.time_noise <= 0:
            return 0.0
        return self.config.time_noise * max(0.0, 1.0 - self.step / max(self.config.time_noise_steps, 1))

    def gaussians_for_camera(self, camera: Cameras, crop_ids: Optional[Tensor]) -> GaussiansToRender:
        params = {name: p if crop_ids is None else p[crop_ids] for name, p in self.gauss_params.items()}
        time = torch.tensor(camera_time(camera))  # 0 when the camera has no time (e.g. a static camera path)
        if self.training:
            self._training_time = time
        params = self.deformed_attributes(time, params, self._time_noise())
        return self.gaussians_from_params(params)

    # ------------------------------------------------------------------------------------------------ losses
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        if self.config.ssim_lambda > 0:
            loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        else:  # the released L1-only loss (skips the SSIM evaluation)
            gt_img = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
            pred_img = outputs["rgb"]
            if "mask" in batch:
                mask = self._downscale_if_required(batch["mask"]).to(self.device)
                gt_img, pred_img = gt_img * mask, pred_img * mask
            loss_dict = {"main_loss": torch.abs(gt_img - pred_img).mean()}
            if self.training:
                self.camera_optimizer.get_loss_dict(loss_dict)
        if self.training and self._training_time is not None:
            loss_dict.update(self._regularisers(self._training_time))
        return loss_dict

    def _regularisers(self, time: Tensor) -> Dict[str, Tensor]:
        cfg = self.config
        losses: Dict[str, Tensor] = {}
        if cfg.temporal_smoothness_weight <= 0 and cfg.rigidity_weight <= 0:
            return losses
        delta = cfg.temporal_delta / max(cfg.time_scale, 1e-12)  # delta is in mapped time
        now = self.deformed_attributes(time)
        later = self.deformed_attributes(time + delta)
        if cfg.temporal_smoothness_weight > 0:
            losses["temporal_smoothness"] = cfg.temporal_smoothness_weight * temporal_smoothness_loss(
                now["means"], later["means"]
            )
        if cfg.rigidity_weight > 0:
            weights, neighbours = self._rigidity_neighbours()
            losses["rigidity"] = cfg.rigidity_weight * knn_rigidity_loss(
                now["means"], now["quats"], later["means"], later["quats"], neighbours, weights
            )
        return losses

    def _rigidity_neighbours(self) -> Tuple[Tensor, Tensor]:
        """Neighbours at time 0 and their weights, recomputed whenever densification changed the Gaussians."""
        n = self.gauss_params["means"].shape[0]
        if self._knn is None or self._knn[1].shape[0] != n or self.step % self.config.refine_every == 0:
            with torch.no_grad():
                means0 = self.deformed_attributes(torch.zeros(()))["means"]
                # Euclidean, as the paper (D3DGS measures |‖x_i‖² − ‖x_j‖²| instead)
                sq_dists, neighbours = nearest_neighbours(means0, self.config.rigidity_neighbours, exclude_self=True)
                self._knn = (torch.exp(-self.config.rigidity_theta * sq_dists), neighbours)
        return self._knn

    # ------------------------------------------------------------------------------------------------ callbacks
    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        if self.config.significance_prune_at:
            from ng_methods.compression.significance import significance_pruning_callback

            callbacks.append(significance_pruning_callback(
                self, training_callback_attributes, self.config.significance_prune_at,
                self.config.significance_prune_fraction,
            ))
        return callbacks
