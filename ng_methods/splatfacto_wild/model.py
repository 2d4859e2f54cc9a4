"""``SplatfactoWildModel``: Splatfacto-W (Xu, Kerr, Kanazawa 2024) on the ng-methods splat base.

Gaussians carry a 72-d appearance feature instead of SH colours; each training image has a 48-d appearance
embedding; an MLP maps ``[embedding || feature]`` to degree-3 SH per Gaussian, so one scene renders under every
photo's lighting. A second MLP maps the embedding to a degree-4 SH background (sky) evaluated on every pixel's
ray. Transient occluders are handled by a robust loss mask and floaters in the sky by an alpha loss. Evaluation
scores the right half of each test image, with an embedding fitted on its left half after training (default) or
learned on it during training (official protocol, :mod:`.datamanager`); see :mod:`.eval_protocol`.

Defaults follow the official code (KevinXu02/splatfacto-w @119a3bf); see ``docs/splatfacto-wild.md`` for where
and why we differ.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.viewer.viewer_elements import ViewerSlider
from torch import Tensor, nn
from torch.nn import Parameter

from ng_methods.splat.model import GaussiansToRender, NGSplatModel, NGSplatModelConfig
from ng_methods.splat.sh import SH2RGB
from ng_methods.splatfacto_wild.appearance import AppearanceColorModel, blend_embeddings
from ng_methods.splatfacto_wild.background import BackgroundSHField, pixel_ray_directions
from ng_methods.splatfacto_wild.datamanager import APPEARANCE_INDEX
from ng_methods.splatfacto_wild.eval_protocol import (
    column_crop_camera,
    fit_appearance_embedding,
    left_columns,
    right_half_metrics,
)
from ng_methods.splatfacto_wild.robust_mask import RobustMaskState, alpha_loss, robust_mask
from ng_methods.splatfacto_wild.strategy import WildStrategy


@dataclass
class SplatfactoWildModelConfig(NGSplatModelConfig):
    """Splatfacto-W. Splatfacto fields keep their meaning; their defaults are the official Splatfacto-W values."""

    _target: Type = field(default_factory=lambda: SplatfactoWildModel)
    warmup_length: int = 1000
    """Steps before densification starts."""
    refine_every: int = 100
    """Densify / cull every this many steps."""
    resolution_schedule: int = 3000
    """Training starts at 1/2^num_downscales resolution; it doubles every this many steps."""
    num_downscales: int = 2
    """Start at 1/4 resolution."""
    cull_alpha_thresh: float = 0.1
    """Cull Gaussians below this opacity (3DGS uses 0.005; the higher value removes transient floaters)."""
    cull_scale_thresh: float = 0.5
    """Cull Gaussians whose largest world scale exceeds this."""
    reset_alpha_every: int = 25
    """Reset opacities (to at most 2 * cull_alpha_thresh) every this many refinements (2500 steps)."""
    reset_alpha_offset: int = 100
    """Opacities are reset at steps with step % (reset_alpha_every * refine_every) == this, after warmup and before
    stop_split_at (official: 100, i.e. 2600, 5100, ...; gsplat's DefaultStrategy: 0)."""
    densify_grad_thresh: float = 8e-4
    """Accumulated absolute screen-space gradient above which Gaussians are split or duplicated."""
    densify_size_thresh: float = 0.01
    """Below this world scale Gaussians are duplicated, above it split."""
    cull_screen_size: float = 0.15
    """Cull Gaussians covering more than this fraction of the screen (until stop_screen_size_at)."""
    split_screen_size: float = 0.05
    """Split Gaussians covering more than this fraction of the screen (until stop_screen_size_at)."""
    split_rule: Literal["official", "gsplat"] = "official"
    """"official": split = high gradient and (world scale > densify_size_thresh or screen size > split_screen_size);
    "gsplat": DefaultStrategy's (high gradient and large) or big on screen. "official" also takes upstream's pause
    ("step % reset_every > #images + refine_every") and clears the statistics at every refinement step."""
    grad_normalization: Literal["official", "gsplat"] = "official"
    """Densification gradient statistic. "official": pixel gradient norm x max(W, H) / 2, averaged over the views
    that saw the Gaussian + 1; "gsplat": x by W / 2, y by H / 2, averaged over the views."""
    stop_screen_size_at: int = 15000
    """Stop screen-size culling / splitting at this step."""
    stop_split_at: int = 20000
    """Stop splitting at this step (culling goes on when cull_after_split_stops)."""
    cull_after_split_stops: bool = True
    """Keep culling transparent and huge Gaussians every refine_every steps after stop_split_at (official)."""
    sh_degree: int = 3
    """SH degree of the Gaussian colours produced by the appearance MLP."""
    sh_degree_interval: int = 2000
    """The Gaussian SH degree grows by one every this many steps; the background's every half of it."""
    rasterize_mode: Literal["classic", "antialiased"] = "antialiased"
    """"antialiased" (official) or "classic" gsplat rasterisation."""
    use_absgrad: bool = True
    """Densify from absolute screen-space gradients (official)."""
    num_random: int = 50000
    """Random initial Gaussians when the dataparser has no SfM points (LLFF data has none)."""
    random_scale: float = 6.0
    """Side of the cube (centred on the origin) the random Gaussians start in. LLFF-normalised scenes put the
    origin at the cameras' focus and the nearest content at depth 1.33; the closest statue camera is 3.3 units
    from the origin, so a 6-unit cube covers what all cameras see without wasting points behind them."""
    appearance_embed_dim: int = 48
    """Per-image appearance embedding size."""
    appearance_features_dim: int = 72
    """Per-Gaussian appearance feature size (zero-initialised)."""
    color_mlp_width: int = 256
    """Hidden width of the colour MLP."""
    color_mlp_layers: int = 2
    """Hidden layers of the colour MLP."""
    enable_background_model: bool = True
    """Model the background (sky) per image with SH on the ray direction; off: Splatfacto's background colour."""
    background_mlp_width: int = 128
    """Hidden width of the background MLP."""
    background_mlp_layers: int = 2
    """Hidden layers of the background MLP."""
    background_sh_field_degree: int = 4
    """SH degree the background MLP outputs (official: 4, i.e. 25 coefficients)."""
    bg_sh_degree: int = 4
    """Highest background SH degree evaluated (official: 4, reached at step 4 * sh_degree_interval / 2)."""
    enable_alpha_loss: bool = True
    """Push opacity to 0 where the background model already explains the pixel."""
    alpha_loss_weight: float = 0.15
    """Weight of the alpha loss."""
    enable_robust_mask: bool = True
    """Mask suspected transient pixels out of the photometric loss."""
    start_robust_mask_at: int = 6000
    """First step the robust mask is used."""
    robust_mask_fraction: Tuple[float, float] = (0.0, 0.4)
    """Range of the fraction of pixels masked (scaled by where the current loss lies in its running range)."""
    robust_mask_reset_interval: int = 6000
    """The running maximum loss is reset every this many steps."""
    never_mask_upper: float = 0.4
    """Fraction of image rows, from the top, that are never masked (mostly sky)."""
    default_appearance_index: int = -1
    """Embedding used for cameras that are not training images (viewer start value, ns-render, ns-export):
    -1 = mean of the training embeddings, i >= 0 = training image i."""
    eval_half_image: bool = True
    """Score the right half of each test image, with an embedding fitted on its left half (or, for cameras the
    datamanager tagged under the official protocol, the embedding trained on it). Off: score the whole image
    rendered with the default embedding."""
    eval_appearance_steps: int = 100
    """Adam steps for the per-test-image embedding fit."""
    eval_appearance_lr: float = 0.02
    """Learning rate of that fit (the training embedding learning rate at its start)."""


def appearance_index(camera: Cameras) -> Optional[int]:
    """The training embedding an evaluation camera was tagged with (official protocol), else None."""
    if camera.metadata and APPEARANCE_INDEX in camera.metadata:
        return int(camera.metadata[APPEARANCE_INDEX])
    return None


class SplatfactoWildModel(NGSplatModel):
    """Splatfacto-W: see the module docstring."""

    config: SplatfactoWildModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.appearance_embeds = nn.Embedding(self.num_train_data, cfg.appearance_embed_dim)
        self.color_model = AppearanceColorModel(
            cfg.appearance_embed_dim, cfg.appearance_features_dim, cfg.color_mlp_width, cfg.color_mlp_layers,
            cfg.sh_degree,
        )
        self.background_model: Optional[BackgroundSHField] = None
        if cfg.enable_background_model:
            self.background_model = BackgroundSHField(
                cfg.appearance_embed_dim, cfg.background_mlp_width, cfg.background_mlp_layers,
                cfg.background_sh_field_degree,
            )
        self.robust_mask_state = RobustMaskState()
        self._embedding_override: Optional[Tensor] = None
        # Camera of each recent get_outputs_for_camera result, keyed by id(outputs["rgb"]): the evaluation protocol
        # needs the camera but get_image_metrics_and_images only receives the outputs (and the viewer thread may
        # render in between, so "the last camera" is not enough).
        self._cameras_by_output: "OrderedDict[int, Tuple[Cameras, Optional[int]]]" = OrderedDict()
        last = max(self.num_train_data - 1, 0)
        # Picked up by nerfstudio's viewer ("Custom Elements"); their start values are the no-viewer defaults.
        self.viewer_appearance_image = ViewerSlider(
            "Appearance of training image (-1 = mean)", cfg.default_appearance_index, -1, last, step=1
        )
        self.viewer_blend_image = ViewerSlider("Blend towards training image (-1 = mean)", -1, -1, last, step=1)
        self.viewer_blend_weight = ViewerSlider("Blend weight", 0.0, 0.0, 1.0, step=0.01)

    def initial_gaussians(self) -> Dict[str, Parameter]:
        """Splatfacto's geometry parameters plus zero appearance features (no per-Gaussian SH colours)."""
        params = super().initial_gaussians()
        params.pop("features_dc")
        params.pop("features_rest")
        num = params["means"].shape[0]
        params["appearance_features"] = Parameter(torch.zeros(num, self.config.appearance_features_dim))
        return params

    def make_strategy(self) -> WildStrategy:
        base = super().make_strategy()
        fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
        official = self.config.split_rule == "official"
        if official:  # the official pause is "step % reset_every > #images + refine_every"
            fields["pause_refine_after_reset"] += 1
        return WildStrategy(
            **fields,
            cull_after_refine_stop=self.config.cull_after_split_stops,
            split_rule=self.config.split_rule,
            grad_normalization=self.config.grad_normalization,
            reset_offset=self.config.reset_alpha_offset,
            reset_stats_every_refine=official,
        )

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_param_groups()
        groups["appearance_embed"] = list(self.appearance_embeds.parameters())
        mlp = self.color_model.mlp
        groups["appearance_model_encoder"] = list(mlp.encoder.parameters())
        groups["appearance_model_base"] = list(mlp.sh_base_head.parameters())
        groups["appearance_model_rest"] = list(mlp.sh_rest_head.parameters())
        if self.background_model is not None:
            bg = self.background_model.mlp
            groups["field_background_encoder"] = list(bg.encoder.parameters())
            groups["field_background_base"] = list(bg.sh_base_head.parameters())
            groups["field_background_rest"] = list(bg.sh_rest_head.parameters())
        return groups

    # ------------------------------------------------------------------------------------------------ appearance
    def default_embedding(self) -> Float[Tensor, "E"]:
        """The embedding for non-training cameras: the viewer's choice (start value: ``default_appearance_index``)."""
        weights = self.appearance_embeds.weight
        index_a = int(round(float(self.viewer_appearance_image.value)))
        index_b = int(round(float(self.viewer_blend_image.value)))
        return blend_embeddings(weights, index_a, index_b, float(self.viewer_blend_weight.value))

    def appearance_embedding(self, camera: Cameras) -> Float[Tensor, "E"]:
        """In training each image uses its own embedding (``cam_idx``); in evaluation under the official protocol a
        test photo uses the embedding it trained (``appearance_idx``, set by the datamanager); otherwise the viewer's
        choice (or an override).

        Outside training ``cam_idx`` is ignored on purpose: nerfstudio's viewer tags every render with the last
        clicked training camera (0 by default), which would make the appearance sliders do nothing.
        """
        if self._embedding_override is not None:
            return self._embedding_override
        index = appearance_index(camera) if not self.training else None
        if self.training and camera.metadata and "cam_idx" in camera.metadata:
            index = int(camera.metadata["cam_idx"])
        if index is not None:
            return self.appearance_embeds(torch.tensor(index, device=self.appearance_embeds.weight.device))
        return self.default_embedding()

    def render_with_embedding(self, camera: Cameras, embedding: Float[Tensor, "E"]) -> Dict[str, Tensor]:
        """``get_outputs`` with every colour (Gaussians and background) from ``embedding``."""
        self._embedding_override = embedding
        try:
            return self.get_outputs(camera)
        finally:
            self._embedding_override = None

    @torch.no_grad()
    def baked_sh(self, embedding: Optional[Tensor] = None) -> Float[Tensor, "N K 3"]:
        """SH coefficients of every Gaussian for ``embedding`` (default: ``default_appearance_index``'s)."""
        if embedding is None:
            embedding = blend_embeddings(self.appearance_embeds.weight, self.config.default_appearance_index, None, 0)
        return self.color_model(embedding, self.gauss_params["appearance_features"]).detach()

    # What ns-export gaussian-splat and Splatfacto's helpers read: SH baked for the default embedding.
    @property
    def features_dc(self) -> Tensor:
        return self.baked_sh()[:, 0]

    @property
    def features_rest(self) -> Tensor:
        return self.baked_sh()[:, 1:]

    @property
    def shs_0(self) -> Tensor:
        return self.features_dc

    @property
    def shs_rest(self) -> Tensor:
        return self.features_rest

    @property
    def colors(self) -> Tensor:
        return SH2RGB(self.features_dc)

    # ------------------------------------------------------------------------------------------------ render
    def gaussians_for_camera(self, camera: Cameras, crop_ids: Optional[Tensor]) -> GaussiansToRender:
        params = {name: p if crop_ids is None else p[crop_ids] for name, p in self.gauss_params.items()}
        colors = self.color_model(self.appearance_embedding(camera), params["appearance_features"])
        return self.gaussians_from_params(params, colors=colors, sh_degree=self.sh_degree_to_use())

    def background_sh_degree_to_use(self) -> int:
        interval = max(self.config.sh_degree_interval // 2, 1)
        return min(self.step // interval, self.config.bg_sh_degree)

    def background_image(
        self, camera: Cameras, background: Float[Tensor, "3"], height: int, width: int
    ) -> Float[Tensor, "*hw 3"]:
        if self.background_model is None:
            return background
        directions = pixel_ray_directions(camera, height, width)
        return self.background_model(self.appearance_embedding(camera), directions, self.background_sh_degree_to_use())

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        outputs = super().get_outputs_for_camera(camera, obb_box)
        self._cameras_by_output[id(outputs["rgb"])] = (camera.to(self.device), appearance_index(camera))
        while len(self._cameras_by_output) > 8:
            self._cameras_by_output.popitem(last=False)
        return outputs

    # ------------------------------------------------------------------------------------------------ losses
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        cfg = self.config
        gt_img = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred_img = outputs["rgb"]
        if "mask" in batch:
            mask = self._downscale_if_required(batch["mask"]).to(self.device)
            gt_img, pred_img = gt_img * mask, pred_img * mask
        errors = torch.abs(gt_img - pred_img)
        if cfg.enable_robust_mask and self.step >= cfg.start_robust_mask_at:
            keep = robust_mask(
                errors, self.robust_mask_state, self.step, tuple(cfg.robust_mask_fraction), cfg.never_mask_upper,
                cfg.robust_mask_reset_interval,
            )
            l1 = (errors * keep).mean()
            gt_for_ssim, pred_for_ssim = gt_img * keep, pred_img * keep
        else:
            l1 = errors.mean()
            gt_for_ssim, pred_for_ssim = gt_img, pred_img
        dssim = 1 - self.ssim(gt_for_ssim.permute(2, 0, 1)[None], pred_for_ssim.permute(2, 0, 1)[None])
        loss_dict = {"main_loss": (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * dssim}
        if cfg.use_scale_regularization and self.step % 10 == 0:  # PhysGaussian's, as Splatfacto (off by default)
            scales = torch.exp(self.gauss_params["scales"])
            ratio = scales.amax(dim=-1) / scales.amin(dim=-1)
            loss_dict["scale_reg"] = 0.1 * (ratio.clamp(min=cfg.max_gauss_ratio) - cfg.max_gauss_ratio).mean()
        if cfg.enable_alpha_loss and self.background_model is not None:
            loss_dict["alpha_loss"] = alpha_loss(
                outputs["accumulation"], gt_img, outputs["background"], cfg.alpha_loss_weight
            )
        if self.training:
            self.camera_optimizer.get_loss_dict(loss_dict)
        return loss_dict

    # ------------------------------------------------------------------------------------------------ metrics
    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Half-image protocol (see :mod:`.eval_protocol`) for outputs of :meth:`get_outputs_for_camera`."""
        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        camera, trained_index = self._cameras_by_output.get(id(outputs["rgb"]), (None, None))
        if (
            not self.config.eval_half_image
            or camera is None
            or (int(camera.height.item()), int(camera.width.item())) != tuple(gt.shape[:2])
        ):
            return super().get_image_metrics_and_images(outputs, batch)
        if trained_index is not None:  # official protocol: the embedding was trained on the left half
            return right_half_metrics(outputs["rgb"], gt, self.lpips), {"img": torch.cat([gt, outputs["rgb"]], dim=1)}
        left = left_columns(gt.shape[1])
        left_camera = column_crop_camera(camera, 0, left)
        embedding, losses = fit_appearance_embedding(
            lambda e: self.render_with_embedding(left_camera, e)["rgb"],
            gt[:, :left],
            self.appearance_embeds.weight.detach().mean(dim=0),
            self.config.eval_appearance_steps,
            self.config.eval_appearance_lr,
            self.config.ssim_lambda,
        )
        with torch.no_grad():
            predicted = self.render_with_embedding(camera, embedding)["rgb"]
        metrics = right_half_metrics(predicted, gt, self.lpips)
        if losses:
            metrics["appearance_fit_loss"] = losses[-1]
        return metrics, {"img": torch.cat([gt, predicted], dim=1)}
