"""NeuS2 model: occupancy-grid marching, the hash-grid SDF field, NeuS alpha compositing, Huber + eikonal losses."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from dataclasses import field as config_field  # `field` is also a config attribute below
from typing import Dict, List, Literal, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor
from torch.nn import Parameter

from ng_methods.compat.lpips import make_lpips
from ng_methods.kernels.volume_rendering import accumulate_along_rays
from ng_methods.metrics import image_metrics
from ng_methods.neus2.field import NeuS2Field, NeuS2FieldConfig
from ng_methods.neus2.levels import ProgressiveLevelsConfig
from ng_methods.neus2.rendering import logistic_density, neus_alpha, neus_weights
from ng_methods.ngpc.sampler import OccupancySampler, OccupancySamplerConfig

_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
FG_MASK_KEY = "fg_mask"  # ng_methods.data.neus_dataset.FG_MASK_KEY (not imported: it pulls in datamanager code)
_QUERY_CHUNK = 1 << 16


def _default_sampler() -> OccupancySamplerConfig:
    """Instant-NGP's density grid as NeuS2 runs it for DTU (``aabb_scale`` 1: one 128^3 cascade)."""
    return OccupancySamplerConfig(
        grid_resolution=128, grid_levels=1, cone_angle=1.0 / 256.0, alpha_thre=0.0, early_stop_eps=0.0,
        near_plane=0.0, occ_threshold=0.1, occ_ema_decay=0.95, occ_warmup_steps=256, occ_update_every=16,
    )


@dataclass
class NeuS2ModelConfig(ModelConfig):
    """NeuS2 (static scenes) as the official code trains DTU (``configs/nerf/dtu.json``)."""

    _target: Type = config_field(default_factory=lambda: NeuS2Model)
    enable_collider: bool = False
    """No near/far collider: rays are marched through the scene box from t = 0, as the official code."""
    field: NeuS2FieldConfig = config_field(default_factory=NeuS2FieldConfig)
    """Hash grid, SDF and colour networks, variance."""
    levels: ProgressiveLevelsConfig = config_field(default_factory=ProgressiveLevelsConfig)
    """Progressive activation of the hash-grid levels."""
    sampler: OccupancySamplerConfig = config_field(default_factory=_default_sampler)
    """Occupancy-grid marching; the grid holds NeuS's logistic density of the SDF, thresholded at min(0.1, mean).
    Its update interval grows as the official one, ``clamp(step // 16, 1, occ_update_every)``."""
    ema_decay: float = 0.95
    """Render and query with the debiased exponential moving average of the field's parameters (tcnn ``Ema``
    optimizer, ``decay`` 0.95: its inference parameters); training and the occupancy grid use the raw ones.
    0 renders with the raw parameters."""
    marching_steps_per_diagonal: int = 1024
    """Minimum marching step = scene-box diagonal / this (``NERF_STEPS``: sqrt(3)/1024 in the unit cube)."""
    cos_anneal_end: int = 0
    """Steps over which NeuS's cosine annealing ratio reaches 1 (``anneal_end``; 0: always 1)."""
    huber_delta: float = 0.1
    """Huber threshold of the colour loss (``huber_loss(target, prediction, 0.1f) / 5``)."""
    rgb_loss_mult: float = 0.2
    """Scale of the Huber loss (the official 1/5), summed over channels and averaged over rays."""
    eikonal_loss_mult: float = 0.01
    """Eikonal weight (``ek_loss_weight``), on the mean over rendered samples of (|grad f| - 1)^2."""
    mask_loss_mult: float = 0.0
    """Weight of the BCE between accumulation and ``batch["fg_mask"]`` (``mask_loss_weight``: 0 for DTU; the mask
    still acts through the random background behind the masked-out pixels)."""
    background_color: Literal["random", "white", "black"] = "random"
    """Background behind masked-out pixels while training (``random_bg_color`` true)."""
    eval_background_color: Literal["white", "black"] = "black"
    """Background for rendering and evaluation (``m_background_color`` black)."""
    eval_num_rays_per_chunk: int = 8192
    """Rays rendered at once when rendering whole images."""


class NeuS2Model(Model):
    """NeuS2; outputs ``rgb``, ``accumulation``, ``depth``, ``normals`` (in [0, 1]), and exposes :meth:`sdf` and
    :meth:`surface_colors` (scene coordinates) for mesh export."""

    config: NeuS2ModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        aabb = self.scene_box.aabb.float()
        extent = aabb[1] - aabb[0]
        if not torch.allclose(extent, extent[0].expand(3)):
            raise ValueError(f"NeuS2 needs a cubic scene box (its SDF lives in the unit cube); got extents {extent}")
        self.register_buffer("aabb", aabb.clone())
        self.extent = float(extent[0])
        self.field = NeuS2Field(self.config.field, self.config.levels)
        # Not an optimizer parameter group: moved only by `update_ema` after each optimizer step.
        self.field_ema = copy.deepcopy(self.field).requires_grad_(False) if self.config.ema_decay > 0 else None
        self.sampler = OccupancySampler(self.config.sampler, aabb.flatten())
        if self.config.sampler.render_step_size is None:
            self.sampler.step_size = self.extent * math.sqrt(3.0) / self.config.marching_steps_per_diagonal
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.lpips = make_lpips()

    # ----------------------------------------------------------------------------------------------- training state

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self.prepare_step,
            ),
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self.update_ema,
            ),
        ]

    def prepare_step(self, step: int) -> None:
        """Before training step ``step``: the level mask, then (on the official schedule) the occupancy grid."""
        self.step.fill_(step)
        self.field.set_step(step)
        if self.field_ema is not None:
            self.field_ema.set_step(step)
        interval = min(max(step // 16, 1), self.config.sampler.occ_update_every)
        if step % interval == 0:
            self.sampler.estimator.update_every_n_steps(
                step=step, occ_eval_fn=self.density_fn, occ_thre=self.config.sampler.occ_threshold,
                ema_decay=self.config.sampler.occ_ema_decay, warmup_steps=self.config.sampler.occ_warmup_steps, n=1,
            )

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """After optimizer step ``step`` (the ``step + 1``-th update): tcnn's debiased EMA,
        ``ema_k = (decay (1 - decay^(k-1)) ema_(k-1) + (1 - decay) w) / (1 - decay^k)`` (``ema_1 = w``)."""
        if self.field_ema is None:
            return
        decay, k = self.config.ema_decay, step + 1
        old_weight = decay * (1.0 - decay ** (k - 1)) / (1.0 - decay**k)
        new_weight = (1.0 - decay) / (1.0 - decay**k)
        for ema, raw in zip(self.field_ema.parameters(), self.field.parameters()):
            ema.mul_(old_weight).add_(raw.detach(), alpha=new_weight)

    def inference_field(self) -> NeuS2Field:
        """The field used for rendering outside training and for SDF / colour queries (the EMA when enabled)."""
        return self.field if self.field_ema is None else self.field_ema

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {
            "grid": list(self.field.encoding.parameters()),
            "mlp": list(self.field.sdf_mlp.parameters()) + list(self.field.color_mlp.parameters()),
            "variance": [self.field.variance],
        }

    # -------------------------------------------------------------------------------------------------- queries

    def to_unit(self, positions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """Scene coordinates -> the network's unit cube."""
        return (positions - self.aabb[0]) / self.extent

    @torch.no_grad()
    def density_fn(self, positions: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 1"]:
        """NeuS's logistic density of the SDF at scene positions (what the occupancy grid stores)."""
        flat = positions.reshape(-1, 3)
        sdf = torch.cat([self.field.sdf_network(self.to_unit(chunk))[0] for chunk in flat.split(_QUERY_CHUNK)])
        return logistic_density(sdf, self.field.inv_s()).reshape(*positions.shape[:-1], 1)

    @torch.no_grad()
    def sdf(self, positions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 1"]:
        """Signed distance at scene positions, in scene units (the unit-cube SDF times the box size)."""
        if positions.shape[0] == 0:
            return positions.new_zeros(0, 1)
        chunks = positions.to(self.aabb).split(_QUERY_CHUNK)
        field = self.inference_field()
        return torch.cat([field.sdf_network(self.to_unit(chunk))[0] for chunk in chunks]) * self.extent

    @torch.no_grad()
    def surface_colors(self, positions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """Colour in [0, 1] seen along the SDF normal (view direction = -normal), e.g. for mesh vertices."""
        colors, field = [], self.inference_field()
        for chunk in positions.to(self.aabb).split(_QUERY_CHUNK):
            unit = self.to_unit(chunk)
            _, features, gradient = field.sdf_and_gradient(unit, create_graph=False)
            view = -F.normalize(gradient, dim=-1)
            colors.append(field.color(features.detach(), view, unit, gradient.detach()))
        return torch.cat(colors) if colors else positions.new_zeros(0, 3)

    # ------------------------------------------------------------------------------------------------ rendering

    def _cos_anneal_ratio(self) -> float:
        end = self.config.cos_anneal_end
        return 1.0 if end == 0 else min(1.0, int(self.step) / end)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        n_rays = len(ray_bundle)
        ray_samples, ray_indices = self.sampler(ray_bundle, self.density_fn)
        frustums = ray_samples.frustums
        t_mid = (frustums.starts + frustums.ends)[:, 0] / 2
        positions = frustums.origins + frustums.directions * t_mid[:, None]
        unit = self.to_unit(positions)
        field = self.field if self.training else self.inference_field()
        sdf, features, gradient = field.sdf_and_gradient(unit, create_graph=self.training)
        if not self.training:
            sdf, features, gradient = sdf.detach(), features.detach(), gradient.detach()
        dt_unit = (frustums.ends - frustums.starts)[:, 0] / self.extent
        alphas = neus_alpha(sdf[:, 0], gradient, frustums.directions, dt_unit, field.inv_s(),
                            self._cos_anneal_ratio())
        weights, rendered = neus_weights(alphas, ray_indices, n_rays)
        rgb = field.color(features, frustums.directions, unit, gradient)
        premultiplied = accumulate_along_rays(weights, rgb, ray_indices, n_rays)
        accumulation = accumulate_along_rays(weights, None, ray_indices, n_rays)
        depth = accumulate_along_rays(weights, t_mid[:, None], ray_indices, n_rays) / accumulation.clamp(min=1e-10)
        normals = accumulate_along_rays(weights, F.normalize(gradient, dim=-1), ray_indices, n_rays)
        background = self._background(self.config.eval_background_color, premultiplied)
        outputs = {
            "rgb": premultiplied + (1.0 - accumulation) * background,
            "accumulation": accumulation,
            "depth": depth,
            "normals": (F.normalize(normals, dim=-1) + 1.0) / 2.0,
            "num_samples_per_ray": torch.bincount(ray_indices, minlength=n_rays)[:, None].float(),
        }
        if self.training:
            outputs["premultiplied_rgb"] = premultiplied
            outputs["gradient_norm"] = gradient[rendered].norm(dim=-1)
        return outputs

    def _background(self, name: str, like: Tensor) -> Tensor:
        return torch.tensor(_COLORS[name], dtype=like.dtype, device=like.device).expand_as(like)

    # --------------------------------------------------------------------------------------------------- losses

    def _foreground(self, batch) -> Tensor | None:
        """Per-pixel foreground weight: the image's alpha, else ``batch["fg_mask"]``, else None (opaque image)."""
        image = batch["image"]
        if image.shape[-1] == 4:
            return image[..., 3:].to(self.device)
        if FG_MASK_KEY in batch:
            return batch[FG_MASK_KEY].to(self.device).to(image.dtype)
        return None

    def _training_pair(self, outputs, batch) -> Tuple[Tensor, Tensor]:
        """Prediction and target on one background behind the masked-out pixels (random per ray by default)."""
        image = batch["image"].to(self.device)[..., :3]
        foreground = self._foreground(batch)
        if foreground is None:
            return outputs["rgb"], image
        if self.config.background_color == "random":
            background = torch.rand_like(image)
        else:
            background = self._background(self.config.background_color, image)
        target = image * foreground + background * (1.0 - foreground)
        return outputs["premultiplied_rgb"] + (1.0 - outputs["accumulation"]) * background, target

    def _eval_target(self, batch) -> Tensor:
        image = batch["image"].to(self.device)[..., :3]
        foreground = self._foreground(batch)
        if foreground is None:
            return image
        return image * foreground + self._background(self.config.eval_background_color, image) * (1.0 - foreground)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        mse = torch.mean((outputs["rgb"].detach() - self._eval_target(batch)) ** 2)
        metrics = {
            "psnr": -10.0 * torch.log10(mse.clamp(min=1e-10)),
            "num_samples_per_batch": outputs["num_samples_per_ray"].sum(),
            "inv_s": self.field.inv_s().detach(),
            "active_levels": self.field.level_mask.sum() / self.config.field.n_features_per_level,
        }
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        pred, target = self._training_pair(outputs, batch) if self.training else (outputs["rgb"],
                                                                                   self._eval_target(batch))
        huber = F.smooth_l1_loss(pred, target, reduction="none", beta=self.config.huber_delta)
        loss_dict = {"rgb_loss": self.config.rgb_loss_mult * huber.sum(dim=-1).mean()}
        if self.training and self.config.eikonal_loss_mult > 0:
            norms = outputs["gradient_norm"]
            eikonal = ((norms - 1.0) ** 2).mean() if norms.numel() else norms.sum()
            loss_dict["eikonal_loss"] = self.config.eikonal_loss_mult * eikonal
        if self.config.mask_loss_mult > 0 and FG_MASK_KEY in batch:
            accumulation = outputs["accumulation"].clamp(1e-4, 1.0 - 1e-4)
            mask = batch[FG_MASK_KEY].to(accumulation)
            loss_dict["mask_loss"] = self.config.mask_loss_mult * F.binary_cross_entropy(accumulation, mask)
        return loss_dict

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        target = self._eval_target(batch)
        metrics = image_metrics(outputs["rgb"], target, self.lpips)
        if FG_MASK_KEY in batch:
            predicted = outputs["accumulation"] > 0.5
            mask = batch[FG_MASK_KEY].to(self.device) > 0.5
            union = (predicted | mask).sum()
            metrics["mask_iou"] = float((predicted & mask).sum() / union) if union > 0 else 1.0
        accumulation = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        images = {"img": torch.cat([target, outputs["rgb"]], dim=1), "accumulation": accumulation, "depth": depth,
                  "normals": outputs["normals"]}
        return metrics, images
