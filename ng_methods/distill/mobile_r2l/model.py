"""``MobileR2LModel``: a neural light field that renders a whole image in one forward pass of a conv network.

For each camera the model builds a low-resolution ray image (full resolution / super-resolution factor, see
:mod:`.rays`), embeds 8 points per ray (312 channels) and lets :class:`.network.MobileR2LNetwork` upsample it to
the full resolution (x12 for forward-facing scenes, x8 for 360-degree ones). It is trained with an MSE to teacher
pseudo-images (official ``train_step``, model/engine.py:239-272); there is no volume rendering, no density and
no depth.

**Resolutions not divisible by the factor.** The low-resolution grid is ``ceil(H / f) x ceil(W / f)``, i.e. the
next multiple of ``f`` is rendered and the extra rows/columns at the bottom/right are cropped. The low-resolution
intrinsics are the full ones divided by ``f`` (principal point included), so the kept pixels see exactly the rays
they would in an exactly divisible image.

**Forward-facing scenes (NDC).** Rays are expressed in the frame of the average training camera (LLFF's
``poses_avg``; stored in the checkpoint as the ``ndc_frame`` buffer), scaled so that the NDC near plane lies at
``ndc_near`` scene units, then mapped to NDC (official near plane 1 in LLFF's recentred world whose nearest depth
is 1 / 0.75, so ``ndc_near = 0.75 * nearest bound``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.models.base_model import Model, ModelConfig
from torch import Tensor
from torch.nn import Parameter

from ng_methods.compat.lpips import make_lpips
from ng_methods.distill.mobile_r2l.network import MobileR2LNetwork, NetworkSpec, embedding_channels
from ng_methods.distill.mobile_r2l.rays import (
    average_camera_frame,
    camera_rays,
    ndc_rays,
    ray_image,
    sample_depths,
    to_frame,
)
from ng_methods.metrics import image_metrics

__all__ = ["MobileR2LModel", "MobileR2LModelConfig", "PLACEHOLDER_DEPTH", "TRAIN_CAMERAS_KEY", "rgb_on_white"]

PLACEHOLDER_DEPTH = 1e3
"""The constant ``depth`` output (scene units) for the viewer's depth compositing; see ``get_outputs_for_camera``."""

TRAIN_CAMERAS_KEY = "mobile_r2l_train_camera_to_worlds"
"""Dataparser-metadata key under which the datamanager hands the training poses [N, 3, 4] to the model."""


@dataclass
class MobileR2LModelConfig(ModelConfig):
    """MobileR2L student (official defaults: main.py:70-78, data/data_utils.py:53-79)."""

    _target: Type = field(default_factory=lambda: MobileR2LModel)
    """target class to instantiate"""
    enable_collider: bool = False
    """No collider: the model consumes cameras, not ray bundles."""
    scene_kind: Literal["forward_facing", "sphere"] = "forward_facing"
    """'forward_facing' (LLFF/Colmap: final upsampler k3 s3, x12 in total) or 'sphere' (Blender: k4 s2, x8)."""
    use_ndc: bool = True
    """Place the points in NDC (official ``--ndc`` for forward-facing scenes); then near/far are NDC depths."""
    ndc_near: Optional[float] = None
    """Distance (scene units) of the NDC near plane from the average camera. None: 0.75 x the dataparser's
    ``near`` metadata (LLFF's bd_factor scaling makes that 1, the official value), else 1."""
    near_plane: float = 0.0
    """Depth of the first point (0 in NDC, data_utils.py:53; 2 for Blender, :78)."""
    far_plane: float = 1.0
    """Depth of the last point (1 in NDC, data_utils.py:54; 6 for Blender, :79)."""
    samples_per_ray: int = 8
    """Points per ray (``--n_sample_per_ray``)."""
    frequencies: int = 6
    """Positional-encoding frequencies (``--multires``); the raw coordinate is appended."""
    depth: int = 60
    """``--netdepth``: (depth - 2) / 2 residual blocks in the body."""
    width: int = 256
    """``--netwidth``: channels of the body."""
    sr_channels: Tuple[int, int, int] = (64, 64, 16)
    """``--sr_kernel``: channels after each of the three transposed convolutions."""
    convs_per_sr_stage: int = 2
    """``--num_conv_layers``: residual blocks after each transposed convolution."""
    activation: Literal["gelu", "relu"] = "gelu"
    """``--activation_fn`` (GELU while training; see the ONNX export for SnapML's GELU)."""

    def network_spec(self) -> NetworkSpec:
        """The network hyper-parameters of this config."""
        return NetworkSpec(
            input_channels=embedding_channels(self.samples_per_ray, self.frequencies), depth=self.depth,
            width=self.width, sr_channels=tuple(self.sr_channels), convs_per_sr_stage=self.convs_per_sr_stage,
            scene_kind=self.scene_kind, activation=self.activation,
        )


class MobileR2LModel(Model):
    """See the module docstring. ``get_outputs(cameras)`` returns ``{"rgb": [B, H, W, 3]}``."""

    config: MobileR2LModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.network = MobileR2LNetwork(self.config.network_spec())
        train_poses = self.kwargs.get("metadata", {}).get(TRAIN_CAMERAS_KEY)
        frame = average_camera_frame(train_poses.float()) if train_poses is not None else torch.eye(4)[:3]
        self.register_buffer("ndc_frame", frame)
        self.ndc_scale = 1.0 / self._ndc_near()
        self._lpips = [None]  # built lazily, kept out of the module tree (and so out of checkpoints)

    def _ndc_near(self) -> float:
        if self.config.ndc_near is not None:
            return float(self.config.ndc_near)
        near = self.kwargs.get("metadata", {}).get("near")
        return 0.75 * float(near) if near is not None else 1.0

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"network": list(self.network.parameters())}

    # ------------------------------------------------------------------------------------------ rendering
    def embedded_ray_image(self, cameras: Cameras) -> Tuple[Tensor, int, int]:
        """The network input ``[B, 312, h, w]`` for ``cameras`` (all of one size), and that size ``(H, W)``."""
        if not torch.all(cameras.camera_type == CameraType.PERSPECTIVE.value):
            raise ValueError("MobileR2L renders pinhole (perspective) cameras only; got camera types "
                             f"{sorted(set(cameras.camera_type.flatten().tolist()))}")
        heights, widths = cameras.height.flatten(), cameras.width.flatten()
        if not (torch.all(heights == heights[0]) and torch.all(widths == widths[0])):
            raise ValueError("All cameras of one MobileR2L batch must share one image size")
        height, width = int(heights[0]), int(widths[0])
        factor = self.network.spec.sr_factor
        low_h, low_w = math.ceil(height / factor), math.ceil(width / factor)
        device = self.ndc_frame.device
        poses = cameras.camera_to_worlds.to(device).float()
        intrinsics = torch.cat([cameras.fx, cameras.fy, cameras.cx, cameras.cy], dim=-1).to(device).float()
        rays_o, rays_d = camera_rays(poses, intrinsics / factor, low_h, low_w)
        if self.config.use_ndc:
            rays_o, rays_d = to_frame(rays_o, rays_d, self.ndc_frame, self.ndc_scale)
            focal_w = (cameras.fx.to(device).float() / width).view(-1, 1, 1)
            focal_h = (cameras.fy.to(device).float() / height).view(-1, 1, 1)
            rays_o, rays_d = ndc_rays(rays_o, rays_d, focal_w, focal_h, near=1.0)
        depths = sample_depths(self.config.near_plane, self.config.far_plane, self.config.samples_per_ray, low_h,
                               low_w, None, perturb=self.training, device=device)
        return ray_image(rays_o, rays_d, depths, self.config.frequencies), height, width

    def get_outputs(self, ray_bundle: Cameras) -> Dict[str, Tensor]:  # type: ignore[override]
        """Render every camera of ``ray_bundle`` (a :class:`Cameras`; ray bundles are not supported)."""
        if not isinstance(ray_bundle, Cameras):
            raise TypeError("MobileR2LModel renders whole images from Cameras (use MobileR2LDataManager), got "
                            f"{type(ray_bundle).__name__}")
        embedded, height, width = self.embedded_ray_image(ray_bundle)
        rgb = self.network(embedded)[:, :, :height, :width]
        return {"rgb": rgb.permute(0, 2, 3, 1)}

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """One forward pass for the whole image (``ns-eval``, ``ns-render``, viewer).

        Returns ``{"rgb": [H, W, 3], "depth": [H, W, 1]}``. A light field predicts no depth: ``depth`` is a
        constant placeholder (:data:`PLACEHOLDER_DEPTH`) because nerfstudio's viewer composites its widgets with
        the model's depth by default and fails without one; the image then sits behind every widget.
        """
        rgb = self.get_outputs(camera.flatten()[0:1])["rgb"][0]
        return {"rgb": rgb, "depth": torch.full_like(rgb[..., :1], PLACEHOLDER_DEPTH)}

    # ------------------------------------------------------------------------------------------ losses
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        mse = torch.mean((outputs["rgb"] - rgb_on_white(batch["image"]).to(outputs["rgb"])) ** 2)
        return {"psnr": -10.0 * torch.log10(mse.detach().clamp(min=1e-10))}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """MSE to the targets (teacher pseudo-images, or real images when mixed in): engine.py:263."""
        target = rgb_on_white(batch["image"]).to(outputs["rgb"])
        return {"rgb_loss": torch.mean((outputs["rgb"] - target) ** 2)}

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """PSNR / SSIM (/ LPIPS when cached offline) against a ground-truth image (RGBA: over white)."""
        predicted = outputs["rgb"]
        target = rgb_on_white(batch["image"]).to(predicted)
        if self._lpips[0] is None:
            self._lpips[0] = make_lpips() or False
        metrics = image_metrics(predicted, target, self._lpips[0] or None)
        return metrics, {"img": torch.cat([target, predicted], dim=1)}


def rgb_on_white(image: Tensor) -> Tensor:
    """``[..., 3]`` images unchanged; ``[..., 4]`` RGBA composited over white (the official Blender background,
    data/data_utils.py:83-89); uint8 scaled to [0, 1]."""
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    if image.shape[-1] == 4:
        return image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
    return image
