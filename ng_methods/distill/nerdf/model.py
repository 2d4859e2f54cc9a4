"""NeRDF student model (Wu et al., ICCV 2023): one network forward per ray predicts the coefficients of a
trigonometric series along the ray; density and colour at any number of samples follow from the basis, and the
samples are composited as in NeRF.

Official code: yushuang-wu/NeRDF @45546129 (``nerdf_llff.py``, ``utils/gauss_lib.py``); values and deviations are
listed in ``docs/nerdf.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Tuple, Type

import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor
from torch.nn import Parameter

from ng_methods.compat.lpips import make_lpips
from ng_methods.distill.nerdf.basis import NUM_CHANNELS, NUM_TERMS, evaluate_basis, gaussian_mixture_density
from ng_methods.distill.nerdf.encoding import encode_ray_input, input_dim
from ng_methods.distill.nerdf.ndc import average_camera_frame, ndc_depth_to_distance, ndc_rays, to_frame
from ng_methods.distill.nerdf.network import NeRDFNetwork
from ng_methods.distill.nerdf.rendering import composite, sample_depths
from ng_methods.distill.nerdf.teacher_density import TeacherDensity, normalized_density_loss
from ng_methods.metrics import image_metrics

_COLORS = {"white": 1.0, "black": 0.0}


@dataclass
class NeRDFModelConfig(ModelConfig):
    """NeRDF student (defaults: the official LLFF configuration, ``configs/fern_nerdf.txt``)."""

    _target: Type = field(default_factory=lambda: NeRDFModel)
    enable_collider: bool = False
    """The student places its own samples (NDC [0, 1], or ``near_plane``..``far_plane``)."""
    ray_parameterization: Literal["ndc", "near_far"] = "ndc"
    """"ndc": forward-facing scenes, inputs and samples in NDC of LLFF's average-camera frame; "near_far": bounded
    scenes, world-space samples between ``near_plane`` and ``far_plane``."""
    near_plane: float = 2.0
    """Near bound of the "near_far" parameterisation (Blender: 2)."""
    far_plane: float = 6.0
    """Far bound of the "near_far" parameterisation (Blender: 6)."""
    num_input_points: int = 16
    """Uniform points per ray fed to the network (stratified while training)."""
    num_terms: int = NUM_TERMS
    """Basis terms (``N_gauss``)."""
    network_depth: int = 8
    """Linear layers of the residual MLP (``netdepth_gs``)."""
    network_width: int = 384
    """Hidden width (``netwidth_gs``)."""
    num_samples_train: int = 128
    """Rendering samples per ray while training (``N_sample_train``), stratified."""
    num_samples_eval: int = 16
    """Rendering samples per ray at test time (``N_sample_test``), uniform."""
    raw_noise_std: float = 1.0
    """Gaussian noise on the raw density while training (``raw_noise_std``)."""
    background_color: Literal["black", "white"] = "black"
    """Colour behind the volume (``white_bkgd``: off for LLFF, on for Blender)."""
    sigma_loss_weight: float = 0.1
    """Weight of the per-ray normalised density constraint (``lambda_sigma``; 0 = ``sigma_constrain`` off)."""
    sigma_constraint_parameterization: Literal["gaussian", "dft"] = "gaussian"
    """Which student density the constraint sees. "gaussian" (official): the Gaussian-mixture reading of channels
    0-2 that ``get_sigma()`` always uses; "dft": the rendered density (channel 0 through the basis)."""
    eval_num_rays_per_chunk: int = 4096
    """Rays rendered at once when rendering whole images."""


class NeRDFModel(Model):
    """The student: outputs ``rgb``, ``accumulation`` and ``depth`` (distance along the world ray)."""

    config: NeRDFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.network = NeRDFNetwork(input_dim(self.config.num_input_points), self.config.network_depth,
                                    self.config.network_width, self.config.num_terms, NUM_CHANNELS)
        # LLFF's recentred frame and the NDC focal scale, taken from the training cameras when training starts
        # and saved with the checkpoint so evaluation and rendering use the same parameterisation.
        self.register_buffer("scene_frame", torch.eye(3, 4))
        self.register_buffer("ndc_scale", torch.ones(2))
        self.teacher_density = TeacherDensity()
        self.lpips = make_lpips()

    def set_scene_frame(self, cameras: Cameras) -> None:
        """Take LLFF's average camera frame and the NDC scale ``(2 fx / W, 2 fy / H)`` from training cameras."""
        poses = cameras.camera_to_worlds.to(self.scene_frame)
        self.scene_frame.copy_(average_camera_frame(poses))
        forward_in_frame = poses[:, :, 2] @ self.scene_frame[:, 2]  # cosine between view and average view
        if self.config.ray_parameterization == "ndc" and bool((forward_in_frame < 0.5).any()):
            warnings.warn("NeRDF's NDC parameterisation expects a forward-facing capture, but some training cameras "
                          "look more than 60 degrees away from the average view; use ray_parameterization="
                          "'near_far' (as nerdf-blender) for 360-degree scenes.", stacklevel=2)
        first = cameras[0]
        scale = [2.0 * float(first.fx) / float(first.width), 2.0 * float(first.fy) / float(first.height)]
        self.ndc_scale.copy_(torch.tensor(scale))

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes
                               ) -> List[TrainingCallback]:
        datamanager = training_callback_attributes.pipeline.datamanager
        self.set_scene_frame(datamanager.train_dataset.cameras)
        teacher = getattr(datamanager, "teacher", None)
        if self.config.sigma_loss_weight > 0:
            self.teacher_density.attach(teacher)
        return []

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"nerdf": list(self.network.parameters())}

    def _student_rays(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor, Tensor, float, float]:
        """Origins and directions the network and sampler use, unit view directions, and the depth range."""
        if self.config.ray_parameterization == "ndc":
            frame_origins, frame_directions = to_frame(self.scene_frame, origins, directions)
            ndc_origins, ndc_directions = ndc_rays(frame_origins, frame_directions, self.ndc_scale)
            return ndc_origins, ndc_directions, F.normalize(frame_directions, dim=-1), 0.0, 1.0
        return origins, directions, F.normalize(directions, dim=-1), self.config.near_plane, self.config.far_plane

    def _distances(self, depths: Tensor, origins: Tensor, directions: Tensor) -> Tensor:
        """World distance along each (unit) ray of every sample."""
        if self.config.ray_parameterization == "ndc":
            frame_origins, frame_directions = to_frame(self.scene_frame, origins, F.normalize(directions, dim=-1))
            return ndc_depth_to_distance(depths, frame_origins, frame_directions)
        return depths

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        origins, directions = ray_bundle.origins.reshape(-1, 3), ray_bundle.directions.reshape(-1, 3)
        net_origins, net_directions, view_directions, near, far = self._student_rays(origins, directions)
        num_rays, training = origins.shape[0], self.training
        input_depths = near + (far - near) * sample_depths(num_rays, self.config.num_input_points, training,
                                                           origins.device)
        points = net_origins[:, None] + net_directions[:, None] * input_depths[..., None]
        coefficients = self.network(encode_ray_input(points, net_origins, view_directions))

        num_samples = self.config.num_samples_train if training else self.config.num_samples_eval
        t = sample_depths(num_rays, num_samples, training, origins.device)
        values = evaluate_basis(coefficients[..., :4], t)
        depths = near + (far - near) * t
        rendered = composite(values[..., 0], torch.sigmoid(values[..., 1:4]), depths,
                             net_directions.norm(dim=-1, keepdim=True),
                             self.config.raw_noise_std if training else 0.0)
        background = _COLORS[self.config.background_color]
        distances = self._distances(depths, origins, directions)
        outputs = {
            "rgb": rendered.rgb + background * (1.0 - rendered.accumulation),
            "accumulation": rendered.accumulation,
            "depth": (rendered.weights * distances).sum(-1, keepdim=True) / rendered.accumulation.clamp(min=1e-10),
        }
        if training and self.teacher_density.available:
            teacher_sigma = self.teacher_density(origins, F.normalize(directions, dim=-1), distances)
            if teacher_sigma is not None:
                outputs["teacher_sigma"] = teacher_sigma
                outputs["student_sigma"] = self._constraint_density(coefficients, values, t)
        return outputs

    def _constraint_density(self, coefficients: Tensor, values: Tensor, t: Tensor) -> Tensor:
        if self.config.sigma_constraint_parameterization == "gaussian":
            return gaussian_mixture_density(coefficients, t)
        return values[..., 0]

    def _target(self, image: Tensor) -> Tensor:
        image = image.to(self.device)
        if image.shape[-1] == 4:
            return image[..., :3] * image[..., 3:] + _COLORS[self.config.background_color] * (1.0 - image[..., 3:])
        return image

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        mse = torch.mean((outputs["rgb"].detach() - self._target(batch["image"])) ** 2)
        return {"psnr": -10.0 * torch.log10(mse.clamp(min=1e-10))}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = {"rgb_loss": F.mse_loss(outputs["rgb"], self._target(batch["image"]))}
        if "teacher_sigma" in outputs:
            loss_dict["sigma_loss"] = self.config.sigma_loss_weight * normalized_density_loss(
                outputs["student_sigma"], outputs["teacher_sigma"])
        return loss_dict

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        target = self._target(batch["image"])
        metrics = image_metrics(outputs["rgb"], target, self.lpips)
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        images = {"img": torch.cat([target, outputs["rgb"]], dim=1), "depth": depth,
                  "accumulation": colormaps.apply_colormap(outputs["accumulation"])}
        return metrics, images

