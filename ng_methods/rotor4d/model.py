"""``Rotor4DGSModel``: 4D Gaussian splatting with 4D rotors (Duan et al., SIGGRAPH 2024, arXiv 2402.03307).

Each Gaussian lives in (x, y, z, t): centre ``(means, times)``, log-scales ``(scales [3], scales_t [1])``, an
8-component rotor ``rotors`` (:mod:`.rotor`), SH degree-3 colours and an opacity. To render a camera at its time
``t`` (``camera.times``; ``default_time`` when it has none), every Gaussian is conditioned on ``t``
(:mod:`.slicing`: moving mean, Schur-complement 3D covariance, opacity times the temporal falloff), Gaussians far
from ``t`` in time are culled, and the rest go to the splat rasteriser as world covariances (``covars=``): gsplat
on CUDA, the PyTorch reference on CPU.

Loss: the Splatfacto photometric loss ``0.8 L1 + 0.2 (1 - SSIM)`` as ``main_loss``, plus ``entropy_loss`` and
``consistency_loss`` (:mod:`.losses`, official weights). Densification: :class:`.strategy.Rotor4DStrategy`.

Cameras per step: with :class:`ng_methods.dynamic.datamanager.MultiImageDatamanager` (``images_per_step = 3``, the
official D-NeRF batch, the method's default) ``get_outputs`` receives ``[B]`` cameras, renders each at its own time
and the losses average over the views. See ``docs/4d-rotor-gs.md`` for the differences from the official code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes

from ng_methods.dynamic import camera_time
from ng_methods.gaussian_flow.protocol import batch_mean, quantised_metrics
from ng_methods.rotor4d.losses import opacity_entropy_loss, velocity_consistency_loss
from ng_methods.rotor4d.rotor import identity_rotors
from ng_methods.rotor4d.slicing import TEMPORAL_CULL_EXPONENT, SlicedGaussians, slice_gaussians
from ng_methods.rotor4d.strategy import RENDERED_IDS_KEY, Rotor4DStrategy
from ng_methods.splat.extent import camera_extent
from ng_methods.splat.init import mean_knn_distance
from ng_methods.splat.model import GaussiansToRender, NGSplatModel, NGSplatModelConfig
from ng_methods.splat.sh import RGB2SH, num_sh_bases

__all__ = ["Rotor4DGSModel", "Rotor4DGSModelConfig"]

INITIAL_GREY = 127.0 / 255.0
"""Initial colour of every Gaussian (the official random initialisation)."""


@dataclass
class Rotor4DGSModelConfig(NGSplatModelConfig):
    """4D-Rotor GS; Splatfacto fields keep their meaning, defaults follow the official D-NeRF setup."""

    _target: Type = field(default_factory=lambda: Rotor4DGSModel)
    background_color: str = "black"  # type: ignore[assignment]
    """Background: "black" (official D-NeRF setting), "white" or "random"."""
    random_init: bool = True
    """Random initialisation (D-NeRF has no point cloud); False starts from the dataparser's seed points."""
    num_random: int = 100_000
    """Number of random Gaussians at initialisation."""
    random_scale: float = 3.0
    """Side of the cube centred at the origin the random means are drawn in ([-1.5, 1.5]^3)."""
    time_init_range: Tuple[float, float] = (0.0, 1.0)
    """Temporal centres are drawn uniformly in this range (the data's normalised times)."""
    initial_opacity: float = 0.1
    """Opacity of every initial Gaussian."""
    num_downscales: int = 0
    """Train at full resolution from the start (the official code does not use a resolution schedule)."""
    warmup_length: int = 500
    """No densification up to this step."""
    refine_every: int = 100
    """Densify and prune every this many steps."""
    stop_split_at: int = 15000
    """No densification from this step."""
    reset_alpha_every: int = 30
    """Clamp opacities every this many refinements (3000 steps)."""
    cull_alpha_thresh: float = 0.005
    """Gaussians below this opacity are pruned at each refinement."""
    densify_grad_thresh: float = 5e-5
    """Mean screen-space gradient threshold for densification (D-NeRF 5e-5; N3V 2e-4)."""
    densify_time_grad_thresh: float = 5e-5
    """Mean |gradient of the temporal centre| threshold for densification."""
    densify_size_thresh: float = 0.01
    """Split instead of duplicate when the largest spatial scale exceeds this fraction of the spatial extent."""
    densify_time_size_fraction: float = 0.2
    """Split instead of duplicate when the temporal scale exceeds this fraction of ``temporal_extent``."""
    temporal_extent: float = 5.0
    """T_ext of the official code (5 for D-NeRF, 10 for N3V)."""
    spatial_extent: Optional[float] = None
    """Scene extent for the spatial thresholds; None: from the training cameras (``extent_from_cameras``) or
    half the diagonal of the dataparser's scene box."""
    extent_from_cameras: bool = True
    """With ``spatial_extent`` None: the official ``camera_extent``, the largest distance of a training camera from
    the cameras' centroid (4.41 on D-NeRF lego), set when training starts; False: half the scene-box diagonal."""
    n_split_samples: int = 2
    """How many Gaussians a split one becomes."""
    split_scale_factor: float = 1.6
    """Scales of split Gaussians are divided by this."""
    reset_alpha_value: float = 0.01
    """Opacities are clamped to at most this at each reset."""
    cull_screen_radius: float = 20.0
    """Before ``stop_screen_size_at``, prune Gaussians whose screen radius exceeded this many pixels."""
    cull_scale_thresh: float = 0.1
    """Before ``stop_screen_size_at``, prune Gaussians larger than this fraction of the spatial extent."""
    stop_screen_size_at: int = 3000
    """Stop pruning big Gaussians at this step."""
    temporal_cull_exponent: float = TEMPORAL_CULL_EXPONENT
    """Do not render a Gaussian at t when ``0.5 (t - mu_t)^2 / S_tt`` reaches this."""
    entropy_weight: float = 0.001
    """Weight of the opacity entropy loss (official D-NeRF value; 0 disables it, as for N3V)."""
    entropy_invisible_weight: float = 0.01
    """Relative weight of the entropy of Gaussians not rendered in the view."""
    consistency_weight: float = 0.05
    """Weight of the 4D kNN velocity consistency loss (0 disables it)."""
    consistency_neighbours: int = 8
    """K of the consistency loss (the Gaussian itself included, as the official code counts)."""
    consistency_time_scale: float = 5.0
    """Time is multiplied by this before the 4D neighbour search (5 for D-NeRF)."""
    default_time: float = 0.0
    """Time rendered for cameras without ``times`` (e.g. ``ns-render interpolate``)."""
    quantise_eval_metrics: bool = False
    """Evaluate on 8-bit images (for comparisons with codes whose metric scripts read PNGs); the official
    4D-Rotor GS evaluation is on float images, so off."""


class Rotor4DGSModel(NGSplatModel):
    """4D-Rotor Gaussian splatting; see the module docstring."""

    config: Rotor4DGSModelConfig

    # ------------------------------------------------------------------------------------------------ setup
    def initial_gaussians(self) -> Dict[str, Parameter]:
        cfg = self.config
        if self.seed_points is not None and not cfg.random_init:
            means = self.seed_points[0].float()
        else:
            means = (torch.rand(cfg.num_random, 3) - 0.5) * cfg.random_scale
        num = means.shape[0]
        low, high = cfg.time_init_range
        times = low + (high - low) * torch.rand(num, 1)
        # The official code starts the temporal scale at the same value as the spatial one (nearest-neighbour size).
        log_scale = torch.log(mean_knn_distance(means, k=3))[:, None]
        features = torch.zeros(num, num_sh_bases(cfg.sh_degree), 3)
        features[:, 0, :] = RGB2SH(torch.full((num, 3), INITIAL_GREY)) if cfg.sh_degree > 0 else torch.logit(
            torch.tensor(INITIAL_GREY))
        opacity_logit = torch.logit(torch.tensor(cfg.initial_opacity))
        return {
            "means": Parameter(means),
            "times": Parameter(times),
            "scales": Parameter(log_scale.repeat(1, 3)),
            "scales_t": Parameter(log_scale.clone()),
            "rotors": Parameter(identity_rotors(num)),
            "features_dc": Parameter(features[:, 0, :].contiguous()),
            "features_rest": Parameter(features[:, 1:, :].contiguous()),
            "opacities": Parameter(torch.full((num, 1), float(opacity_logit))),
        }

    def scene_extent(self) -> float:
        if self.config.spatial_extent is not None:
            return float(self.config.spatial_extent)
        return float(self.scene_box.get_diagonal_length()) / 2.0

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Splatfacto's callbacks; first sets the official camera extent on the strategy (see ``spatial_extent``)."""
        cfg = self.config
        if cfg.spatial_extent is None and cfg.extent_from_cameras and attributes.pipeline is not None:
            cameras = attributes.pipeline.datamanager.train_dataset.cameras
            self.strategy.spatial_extent = camera_extent(cameras.camera_to_worlds, factor=1.0)
        return super().get_training_callbacks(attributes)

    def make_strategy(self) -> Rotor4DStrategy:  # type: ignore[override]
        """The official 4D refinement schedule (see :class:`Rotor4DStrategy`)."""
        cfg = self.config
        return Rotor4DStrategy(
            grad_threshold=cfg.densify_grad_thresh,
            grad_threshold_t=cfg.densify_time_grad_thresh,
            percent_dense_xy=cfg.densify_size_thresh,
            percent_dense_t=cfg.densify_time_size_fraction,
            temporal_extent=cfg.temporal_extent,
            spatial_extent=self.scene_extent(),
            n_split_samples=cfg.n_split_samples,
            split_scale_factor=cfg.split_scale_factor,
            refine_start_iter=cfg.warmup_length,
            refine_stop_iter=cfg.stop_split_at,
            refine_every=cfg.refine_every,
            reset_every=cfg.reset_alpha_every * cfg.refine_every,
            reset_opacity=cfg.reset_alpha_value,
            prune_opacity=cfg.cull_alpha_thresh,
            prune_screen_radius=cfg.cull_screen_radius,
            prune_scale_fraction=cfg.cull_scale_thresh,
            prune_big_stop_iter=cfg.stop_screen_size_at,
            absgrad=False,  # the official rule thresholds the plain (signed-sum) screen-space gradient
        )

    # ------------------------------------------------------------------------------------------------ state
    @property
    def times(self) -> Tensor:
        return self._gauss("times")

    @property
    def rotors(self) -> Tensor:
        return self._gauss("rotors")

    def scales_4d(self) -> Tensor:
        """Linear 4D scales ``[N, 4]`` (sx, sy, sz, st)."""
        return torch.exp(torch.cat([self._gauss("scales"), self._gauss("scales_t")], dim=-1))

    def slice_at(self, t: float) -> SlicedGaussians:
        """All Gaussians conditioned on time ``t`` (see :func:`.slicing.slice_gaussians`)."""
        return slice_gaussians(
            self.means, self.times[:, 0], self.scales_4d(), self.rotors, torch.sigmoid(self.opacities[:, 0]), t,
            cull_exponent=self.config.temporal_cull_exponent,
        )

    # ------------------------------------------------------------------------------------------------ render
    def gaussians_for_camera(self, camera: Cameras, crop_ids: Optional[Tensor]) -> GaussiansToRender:
        """The Gaussians sliced at the camera's time, temporally culled (and cropped), as world covariances."""
        sliced = self.slice_at(camera_time(camera, self.config.default_time))
        keep = sliced.visible if crop_ids is None else sliced.visible & crop_ids
        if not keep.any():  # nothing lives at this time: render one (invisible) Gaussian rather than none
            keep = keep.clone()
            keep[torch.argmax(sliced.opacities)] = True
        ids = torch.where(keep)[0]
        self._last_slice, self._rendered_ids = sliced, ids
        colors = torch.cat([self.features_dc[:, None, :], self.features_rest], dim=1)[ids]
        if self.config.sh_degree > 0:
            sh_degree: Optional[int] = self.sh_degree_to_use()
        else:
            colors, sh_degree = torch.sigmoid(colors[:, 0, :]), None
        return GaussiansToRender(
            means=sliced.means[ids], quats=None, scales=None, opacities=sliced.opacities[ids], colors=colors,
            sh_degree=sh_degree, covars=sliced.covars[ids], ids=ids,
        )

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, list]]:
        """Render one camera; in training, a batch ``[B]`` of cameras gives outputs stacked ``[B, H, W, C]``."""
        self._views = []
        if self.training and camera.shape[0] > 1:
            return self._get_batch_outputs(camera)
        return self._render_view(camera)

    def _render_view(self, camera: Cameras) -> Dict[str, Union[Tensor, list]]:
        self._rendered_ids = None
        outputs = super().get_outputs(camera)
        if self._rendered_ids is not None and getattr(self, "info", None) is not None:
            self.info[RENDERED_IDS_KEY] = self._rendered_ids
            self._views.append((self._rendered_ids, self.info))
        return outputs

    def _get_batch_outputs(self, cameras: Cameras) -> Dict[str, Union[Tensor, list]]:
        cam_idx = (cameras.metadata or {}).get("cam_idx")
        views = []
        for i in range(cameras.shape[0]):
            view = cameras[i:i + 1]
            view.metadata = None if cam_idx is None else {"cam_idx": cam_idx[i]}
            views.append(self._render_view(view))
        self.info = {"views": [info for _, info in self._views]}
        return {
            "rgb": torch.stack([v["rgb"] for v in views]),
            "accumulation": torch.stack([v["accumulation"] for v in views]),
            "depth": None,
            "background": views[0]["background"],
        }

    def get_image_metrics_and_images(self, outputs, batch):
        if self.config.quantise_eval_metrics:
            return quantised_metrics(self, outputs, batch)
        return super().get_image_metrics_and_images(outputs, batch)

    # ------------------------------------------------------------------------------------------------ losses
    def rendered_mask(self) -> Optional[Tensor]:
        """``[N]`` bool: Gaussians drawn (radius > 0) in any view of the last render, or None before any render."""
        views = getattr(self, "_views", None)
        if not views:
            return None
        mask = torch.zeros(self.num_points, dtype=torch.bool, device=views[0][0].device)
        for ids, info in views:
            radii = info["radii"]
            if radii.dim() == 3:
                radii = radii.max(dim=-1).values
            mask[ids[(radii > 0).any(dim=0)]] = True
        return mask

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        if outputs["rgb"].dim() == 4:
            return batch_mean(super().get_metrics_dict, outputs, batch)
        return super().get_metrics_dict(outputs, batch)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        if outputs["rgb"].dim() == 4:  # official batch loss: mean L1 and mean SSIM over the views
            loss_dict = batch_mean(super().get_loss_dict, outputs, batch)
        else:
            loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        visible = self.rendered_mask()
        if visible is None or not self.training:
            return loss_dict
        cfg = self.config
        if cfg.entropy_weight > 0:
            opacities = torch.sigmoid(self.opacities[:, 0])
            loss_dict["entropy_loss"] = cfg.entropy_weight * opacity_entropy_loss(
                opacities, visible, cfg.entropy_invisible_weight
            )
        if cfg.consistency_weight > 0:  # velocities do not depend on t: any view's slice has them
            loss_dict["consistency_loss"] = cfg.consistency_weight * velocity_consistency_loss(
                self.means[visible], self.times[visible, 0], self._last_slice.velocities[visible],
                num_neighbours=cfg.consistency_neighbours, time_scale=cfg.consistency_time_scale,
            )
        return loss_dict
