"""NGPC NeRF model: occupancy-grid marching, a grid-encoded field, and volume rendering (Instant-NGP recipe)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as config_field  # `field` is also a config attribute below
from typing import Dict, List, Literal, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch.nn import Parameter

from ng_methods.compat.lpips import make_lpips
from ng_methods.kernels.volume_rendering import composite
from ng_methods.losses.s3im import S3IMConfig
from ng_methods.ngpc.field import NGPCField, NGPCFieldConfig
from ng_methods.metrics import image_metrics
from ng_methods.ngpc.sampler import OccupancySampler, OccupancySamplerConfig

_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


@dataclass
class NGPCModelConfig(ModelConfig):
    """Instant-NGP-style NeRF on one of the NGPC encodings."""

    _target: Type = config_field(default_factory=lambda: NGPCModel)
    field: NGPCFieldConfig = config_field(default_factory=NGPCFieldConfig)
    """Encoding and MLP sizes."""
    sampler: OccupancySamplerConfig = config_field(default_factory=OccupancySamplerConfig)
    """Occupancy-grid marching."""
    s3im: S3IMConfig = config_field(default_factory=S3IMConfig)
    """Stochastic structural similarity loss over the ray batch (weight 0 disables it)."""
    scene_contraction: bool = False
    """Contract unbounded space into a ball of radius 2 (real captures); off for bounded (Blender) scenes."""
    background_color: Literal["random", "white", "black"] = "random"
    """Background behind the scene while training on images with alpha (random: Instant-NGP's choice)."""
    eval_background_color: Literal["white", "black"] = "white"
    """Background for rendering, evaluation, and training on images without alpha."""
    eval_num_rays_per_chunk: int = 8192
    """Rays rendered at once when rendering whole images."""


class NGPCModel(Model):
    """Instant-NGP recipe on a configurable grid encoding; outputs ``rgb``, ``depth``, ``accumulation``."""

    config: NGPCModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        contraction = SceneContraction(order=float("inf")) if self.config.scene_contraction else None
        self.field = NGPCField(self.config.field, self.scene_box.aabb, contraction)
        self.sampler = OccupancySampler(self.config.sampler, self.scene_box.aabb.flatten())
        self.s3im = self.config.s3im.setup() if self.config.s3im.weight > 0 else None
        self.lpips = make_lpips()

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def update_occupancy_grid(step: int) -> None:
            self.sampler.update(step, self.field.density_fn)

        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=update_occupancy_grid,
            )
        ]

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {
            "grid": list(self.field.encoding.parameters()),
            "mlp": list(self.field.density_mlp.parameters()) + list(self.field.color_mlp.parameters()),
        }

    def _background(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(_COLORS[name], dtype=like.dtype, device=like.device).expand_as(like)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, torch.Tensor]:
        n_rays = len(ray_bundle)
        ray_samples, ray_indices = self.sampler(ray_bundle, self.field.density_fn)
        field_outputs = self.field(ray_samples)
        t_starts = ray_samples.frustums.starts[:, 0]
        t_ends = ray_samples.frustums.ends[:, 0]
        premultiplied_rgb, depth, accumulation, _ = composite(
            t_starts, t_ends, field_outputs[FieldHeadNames.DENSITY][:, 0], field_outputs[FieldHeadNames.RGB],
            ray_indices, n_rays,
        )
        depth = depth / accumulation.clamp(min=1e-10)
        background = self._background(self.config.eval_background_color, premultiplied_rgb)
        outputs = {
            "rgb": premultiplied_rgb + (1.0 - accumulation) * background,
            "accumulation": accumulation,
            "depth": depth,
            "num_samples_per_ray": torch.bincount(ray_indices, minlength=n_rays)[:, None].float(),
        }
        if self.training:
            outputs["premultiplied_rgb"] = premultiplied_rgb
        return outputs

    def _training_pair(self, outputs, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prediction and target composited on the same background (random per ray for RGBA targets)."""
        image = batch["image"].to(self.device)
        if image.shape[-1] == 4:
            if self.config.background_color == "random":
                background = torch.rand_like(image[:, :3])
            else:
                background = self._background(self.config.background_color, image[:, :3])
            target = image[:, :3] * image[:, 3:] + background * (1.0 - image[:, 3:])
            pred = outputs["premultiplied_rgb"] + (1.0 - outputs["accumulation"]) * background
            return pred, target
        return outputs["rgb"], image

    def _eval_target(self, image: torch.Tensor) -> torch.Tensor:
        image = image.to(self.device)
        if image.shape[-1] == 4:
            background = self._background(self.config.eval_background_color, image[..., :3])
            return image[..., :3] * image[..., 3:] + background * (1.0 - image[..., 3:])
        return image

    def get_metrics_dict(self, outputs, batch) -> Dict[str, torch.Tensor]:
        target = self._eval_target(batch["image"])
        mse = torch.mean((outputs["rgb"].detach() - target) ** 2)
        return {
            "psnr": -10.0 * torch.log10(mse.clamp(min=1e-10)),
            "num_samples_per_batch": outputs["num_samples_per_ray"].sum(),
        }

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        pred, target = self._training_pair(outputs, batch)
        loss_dict = {"rgb_loss": torch.mean((pred - target) ** 2)}
        if self.s3im is not None and self.training:
            loss_dict["s3im_loss"] = self.config.s3im.weight * self._s3im(pred, target)
        return loss_dict

    def _s3im(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """S3IM over the ray batch. The paper's virtual patch is 64x64 for 4096 rays; with nerfstudio's dynamic
        batch size the patch keeps its height and its width follows the batch (leftover rays are left out)."""
        height = self.config.s3im.patch_height
        width = pred.shape[0] // height
        if width == 0:
            return pred.new_zeros(())
        s3im = self.s3im if width == self.config.s3im.patch_width else self.config.s3im.setup(patch_width=width)
        return s3im(pred[: height * width], target[: height * width])

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        target = self._eval_target(batch["image"])
        metrics = image_metrics(outputs["rgb"], target, self.lpips)
        accumulation = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        images = {"img": torch.cat([target, outputs["rgb"]], dim=1), "accumulation": accumulation, "depth": depth}
        return metrics, images
