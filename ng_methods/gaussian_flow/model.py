"""``GaussianFlowModel``: Gaussian-Flow (Lin et al., CVPR 2024) on the ng-methods splat base.

Every Gaussian carries Dual-Domain Deformation Model coefficients (:mod:`ng_methods.gaussian_flow.dddm`) for its
position, rotation (the unnormalised quaternion), colour DC and, when ``sh_rest_order > 0`` (the released lego
recipe), its SH-AC bands, plus a learnable time offset ``tau_i``; scale and opacity are static. All of them live in
``gauss_params``, so the densification strategy (:class:`.strategy.GaussianFlowStrategy`, gsplat's
``DefaultStrategy`` with the released rules) splits, duplicates and prunes them with the Gaussians and each gets
its own optimizer group.

With :class:`ng_methods.dynamic.datamanager.MultiImageDatamanager` (``images_per_step = 8``, the released lego
batch) ``get_outputs`` receives ``[B]`` cameras, renders each at its own time, and the L1 loss averages over them.

Optional Light4GS-style significance pruning (:mod:`ng_methods.compression.significance`) runs through a training
callback when ``significance_prune_at`` is set (the ``gaussian-flow-compressed`` method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from torch import Tensor
from torch.nn import Parameter

from ng_methods.dynamic.times import camera_time
from ng_methods.gaussian_flow.dddm import dddm_residual, map_time
from ng_methods.gaussian_flow.losses import knn_rigidity_loss, temporal_smoothness_loss
from ng_methods.gaussian_flow.trajectory_losses import moving_loss, parameter_knn_loss, squared_norm_neighbours
from ng_methods.gaussian_flow.protocol import batch_mean, quantised_metrics, scale_lrs
from ng_methods.gaussian_flow.strategy import GaussianFlowStrategy
from ng_methods.splat.extent import camera_extent
from ng_methods.splat.knn import nearest_neighbours
from ng_methods.splat.model import GaussiansToRender, NGSplatModel, NGSplatModelConfig

# (gauss_params name of the trajectory, static attribute it deforms); the attribute's trailing dims are flattened
TRAJECTORIES = (("means_traj", "means"), ("quats_traj", "quats"), ("features_dc_traj", "features_dc"),
                ("features_rest_traj", "features_rest"))
POSITION_LR_GROUPS = ("means", "means_traj")
"""Groups whose learning rate the released code multiplies by ``cameras_extent`` (``spatial_lr_scale``)."""


@dataclass
class GaussianFlowModelConfig(NGSplatModelConfig):
    """Gaussian-Flow: Splatfacto's Gaussians with polynomial + Fourier trajectories (released lego recipe)."""

    _target: Type = field(default_factory=lambda: GaussianFlowModel)
    position_order: int = 2
    """DDDM order L of the position trajectory (released lego 2; per-scene values: ``recipes.py``)."""
    rotation_order: int = 1
    """DDDM order L of the quaternion trajectory (lego 1, i.e. a constant offset)."""
    color_order: int = 2
    """DDDM order L of the colour-DC trajectory (lego 2)."""
    sh_rest_order: int = 2
    """DDDM order L of the SH-AC (``features_rest``) trajectory; 0 keeps the AC bands static (lego 2, others 0)."""
    time_scale: float = 0.5
    """Global time rescaling ``s`` in ``t' = t*s + o - tau_i`` (released ``factor_t_value``: lego 0.5)."""
    time_shift: float = 0.1
    """Global time offset ``o`` in ``t' = t*s + o - tau_i`` (released ``offset_t_value``: 0.1)."""
    time_noise: float = 0.0
    """Std of Gaussian noise on the mapped training time, annealed linearly to 0 over ``time_noise_steps``
    (released ``random_noise``: off on lego, 0.01 x ``time_scale`` on most other scenes)."""
    time_noise_steps: int = 10000
    """Steps over which ``time_noise`` anneals to 0 (the run length)."""
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
    parameter_knn_weight: float = 0.0
    """Weight of D3DGS's parameter-KNN loss on the position and rotation trajectories, applied after
    ``stop_split_at`` (released ``knn_loss``: 0.1 on bouncingballs, hook, mutant, standup, trex; off on lego)."""
    parameter_knn_neighbours: int = 20
    """Neighbours (self included) of the parameter-KNN loss (released ``ktop``: 20)."""
    moving_loss_weight: float = 0.0
    """Weight of D3DGS's moving loss ``mean|position coefs| + mean|rotation coefs|`` (released
    ``get_moving_loss``: 1 on jumpingjacks; off on lego)."""
    significance_prune_at: Tuple[float, ...] = ()
    """Fractions of the run's steps at which to prune by Light4GS spatio-temporal significance (empty: never;
    Light4GS prunes at 15k and 18k of its 30k D-NeRF run, i.e. (0.5, 0.6))."""
    significance_prune_fraction: float = 0.4
    """Fraction of the least significant Gaussians removed at each pruning round (Light4GS: 0.4)."""
    significance_opacity: Literal["logit", "activated"] = "logit"
    """Opacity the significance render uses: ``logit`` as Light4GS's released ``count_render`` (it passes the
    pre-activation opacity, so Gaussians below 0.5 opacity score 0), ``activated`` as LightGaussian defines it."""
    ssim_lambda: float = 0.0
    """SSIM weight of the photometric loss; the released loss is L1 only (its SSIM term is commented out)."""
    background_color: Literal["random", "black", "white"] = "white"
    """D-NeRF scenes are composited on white (the released D-NeRF configs set ``white_bg``)."""
    random_init: bool = True
    """D-NeRF has no SfM points: start from random Gaussians."""
    num_random: int = 2000
    """Number of random initial Gaussians (released D-NeRF reader: 2000)."""
    random_scale: float = 2.6
    """Side of the cube the random Gaussians fill (released: uniform in [-1.3, 1.3]^3)."""
    grey_identity_init: bool = True
    """Released random initialisation: identity rotations and SH-DC ~ U[0, 1/255] (near grey); False keeps
    Splatfacto's random rotations and colours."""
    num_downscales: int = 0
    """Full resolution from step 0 (the released code has no resolution schedule)."""
    sh_degree_interval: int = 100
    """Raise the SH degree every this many steps (released: every 100)."""
    warmup_length: int = 500
    """No densification up to this step (``densify_from_iter``)."""
    refine_every: int = 100
    """Densify and prune every this many steps (``densification_interval`` = ``prune_interval``)."""
    stop_split_at: int = 5000
    """No densification (or opacity reset) from this step (lego ``densify_until_iter``)."""
    densify_grad_thresh: float = 5e-5
    """Mean NDC view-space gradient (summed over the step's views) at or above which Gaussians densify (lego)."""
    use_absgrad: bool = False
    """The released rule thresholds the plain (signed-sum) gradient, not gsplat's absgrad."""
    cull_alpha_thresh: float = 0.001
    """Prune Gaussians below this opacity (``min_opacity``)."""
    reset_alpha_every: int = 30
    """Reset opacities every this many refinements (``opacity_reset_interval`` 3000)."""
    reset_alpha_value: float = 0.1
    """Opacities are clamped to at most this at each reset (released ``reset_opacity``: 0.1)."""
    reset_alpha_at_warmup: bool = True
    """Also reset at ``warmup_length`` (the released rule for white backgrounds)."""
    cull_scale_thresh: float = 0.1
    """After the first reset, prune Gaussians larger than this fraction of the camera extent."""
    cull_screen_radius: Optional[float] = None
    """After the first reset, prune Gaussians whose screen radius exceeded this many pixels. None: never, as the
    released code (its 20 px test reads radii that ``densification_postfix`` has just zeroed)."""
    extent_from_cameras: bool = True
    """Scene extent = 1.1 x the largest distance of a training camera from the cameras' centroid (released
    ``cameras_extent``); it scales the position learning rates and the densify/prune size thresholds.
    False: 1 (the learning rates and thresholds are then absolute)."""
    quantise_eval_metrics: bool = True
    """Evaluate PSNR/SSIM/LPIPS on 8-bit images, as the released ``metrics.py`` does on saved PNGs."""


class GaussianFlowModel(NGSplatModel):
    """Splat model whose position, rotation and colours follow per-Gaussian DDDM trajectories in time."""

    config: GaussianFlowModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self._knn: Optional[Tuple[Tensor, Tensor]] = None
        self._parameter_knn: Optional[Tuple[Tensor, Tensor]] = None
        self._training_time: Optional[Tensor] = None

    def initial_gaussians(self) -> Dict[str, Parameter]:
        params = super().initial_gaussians()
        cfg = self.config
        n = params["means"].shape[0]
        if cfg.grey_identity_init:
            with torch.no_grad():
                params["quats"].zero_()[:, 0] = 1.0
                if cfg.sh_degree > 0:
                    params["features_dc"].copy_(torch.rand(n, 3) / 255.0)  # RGB2SH(SH2RGB(U[0, 1/255]))
                else:
                    params["features_dc"].zero_()  # sigmoid(0) = grey
        orders = (cfg.position_order, cfg.rotation_order, cfg.color_order, cfg.sh_rest_order)
        for (name, attribute), order in zip(TRAJECTORIES, orders):
            width = params[attribute][0].numel()
            if order > 0 and width > 0:
                params[name] = Parameter(torch.zeros(n, order, width, 3))  # zero-init: the scene starts static
        params["time_offsets"] = Parameter(torch.zeros(n, 1))
        return params

    def make_strategy(self) -> GaussianFlowStrategy:  # type: ignore[override]
        cfg = self.config
        return GaussianFlowStrategy(
            prune_opa=cfg.cull_alpha_thresh, grow_grad2d=cfg.densify_grad_thresh, grow_scale3d=cfg.densify_size_thresh,
            prune_scale3d=cfg.cull_scale_thresh, refine_start_iter=cfg.warmup_length,
            refine_stop_iter=cfg.stop_split_at, reset_every=cfg.reset_alpha_every * cfg.refine_every,
            refine_every=cfg.refine_every, absgrad=cfg.use_absgrad, revised_opacity=False, verbose=False,
            reset_opacity=cfg.reset_alpha_value, prune_radius_px=cfg.cull_screen_radius,
            extra_reset_steps=(cfg.warmup_length,) if cfg.reset_alpha_at_warmup else (),
        )

    # ------------------------------------------------------------------------------------------------ deformation
    def deformed_attributes(
        self, time: Tensor, params: Optional[Dict[str, Tensor]] = None, noise_std: float = 0.0
    ) -> Dict[str, Tensor]:
        """The deformed attributes at the normalised ``time`` (static ones pass through unchanged)."""
        params = dict(self.gauss_params if params is None else params)
        t = map_time(time.to(params["time_offsets"].device), params["time_offsets"],
                     self.config.time_scale, self.config.time_shift, noise_std)
        for traj_name, name in TRAJECTORIES:
            if traj_name in params:
                base = params[name]
                params[name] = base + dddm_residual(params[traj_name], t).reshape(base.shape)
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

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, list]]:
        """Render one camera; in training, a batch ``[B]`` of cameras gives outputs stacked ``[B, H, W, C]``."""
        if not (self.training and camera.shape[0] > 1):
            return super().get_outputs(camera)
        cam_idx = (camera.metadata or {}).get("cam_idx")
        views, infos = [], []
        for i in range(camera.shape[0]):
            view = camera[i:i + 1]
            view.metadata = None if cam_idx is None else {"cam_idx": cam_idx[i]}
            views.append(super().get_outputs(view))
            infos.append(self.info)
        self.info = {"views": infos}
        return {"rgb": torch.stack([v["rgb"] for v in views]), "depth": None,
                "accumulation": torch.stack([v["accumulation"] for v in views]), "background": views[0]["background"]}

    # ------------------------------------------------------------------------------------------------ losses
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        if outputs["rgb"].dim() == 4:
            return batch_mean(super().get_metrics_dict, outputs, batch)
        return super().get_metrics_dict(outputs, batch)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        if outputs["rgb"].dim() == 4:  # released batch loss: L1 over the stacked views (= mean of per-view L1)
            loss_dict = batch_mean(self._photometric_loss, outputs, batch)
        else:
            loss_dict = self._photometric_loss(outputs, batch)
        if self.training:
            self.camera_optimizer.get_loss_dict(loss_dict)
        if self.training and self._training_time is not None:
            loss_dict.update(self._regularisers(self._training_time))
        if self.training:
            loss_dict.update(self._trajectory_regularisers())
        return loss_dict

    def _photometric_loss(self, outputs, batch) -> Dict[str, Tensor]:
        if self.config.ssim_lambda > 0:
            loss = NGSplatModel.get_loss_dict(self, outputs, batch)
            return {"main_loss": loss["main_loss"]}
        gt_img = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred_img = outputs["rgb"]
        if "mask" in batch:
            mask = self._downscale_if_required(batch["mask"]).to(self.device)
            gt_img, pred_img = gt_img * mask, pred_img * mask
        return {"main_loss": torch.abs(gt_img - pred_img).mean()}

    def get_image_metrics_and_images(self, outputs, batch):
        if not self.config.quantise_eval_metrics:
            return super().get_image_metrics_and_images(outputs, batch)
        return quantised_metrics(self, outputs, batch)

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

    def _trajectory_regularisers(self) -> Dict[str, Tensor]:
        """The released recipes' D3DGS losses on the canonical trajectory coefficients (see trajectory_losses)."""
        cfg = self.config
        coefficients = [self.gauss_params[name] for name in ("means_traj", "quats_traj") if name in self.gauss_params]
        losses: Dict[str, Tensor] = {}
        if cfg.moving_loss_weight > 0 and coefficients:
            losses["moving_loss"] = cfg.moving_loss_weight * moving_loss(coefficients)
        if cfg.parameter_knn_weight > 0 and coefficients and self.step > cfg.stop_split_at:
            n = self.gauss_params["means"].shape[0]
            if self._parameter_knn is None or self._parameter_knn[1].shape[0] != n:
                # D3DGS takes the neighbours once, at the end of densification; the count only changes if a
                # later step prunes, and then they are taken again.
                self._parameter_knn = squared_norm_neighbours(self.gauss_params["means"], cfg.parameter_knn_neighbours)
            weights, neighbours = self._parameter_knn
            losses["parameter_knn"] = cfg.parameter_knn_weight * parameter_knn_loss(coefficients, neighbours, weights)
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
        self._apply_camera_extent(training_callback_attributes)
        if self.config.significance_prune_at:
            from ng_methods.compression.significance import significance_pruning_callback

            callbacks.append(significance_pruning_callback(
                self, training_callback_attributes, self.config.significance_prune_at,
                self.config.significance_prune_fraction, self.config.significance_opacity,
            ))
        return callbacks

    def _apply_camera_extent(self, attributes: TrainingCallbackAttributes) -> None:
        """Released ``cameras_extent``: the strategy's scene scale and the position learning rates' factor."""
        if not self.config.extent_from_cameras or attributes.pipeline is None:
            return
        extent = camera_extent(attributes.pipeline.datamanager.train_dataset.cameras.camera_to_worlds)
        self.strategy_state["scene_scale"] = extent
        if attributes.optimizers is not None:
            scale_lrs(attributes.optimizers, POSITION_LR_GROUPS, extent)
