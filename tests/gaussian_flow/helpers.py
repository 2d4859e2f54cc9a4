"""A tiny Gaussian-Flow model and cameras that see it, built without a dataset (CPU, reference rasteriser)."""

from __future__ import annotations

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox

from ng_methods.gaussian_flow.model import GaussianFlowModel, GaussianFlowModelConfig


def tiny_model(num_gaussians: int = 40, seed: int = 0, **overrides) -> GaussianFlowModel:
    torch.manual_seed(seed)
    config = GaussianFlowModelConfig(
        num_random=num_gaussians, random_scale=1.0, rasterizer_backend="torch", sh_degree=1,
        position_order=3, rotation_order=2, color_order=2, **{"sh_rest_order": 0, **overrides},
    )
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=4,
                         metadata={})
    with torch.no_grad():  # larger, more opaque Gaussians so every one shows in a 24x24 image
        model.gauss_params["scales"].fill_(-2.0)
        model.gauss_params["opacities"].fill_(0.5)
    model.eval()
    return model


def look_at_origin(times=(0.0, 0.3, 0.6, 0.9), size: int = 24, distance: float = 3.0) -> Cameras:
    """``len(times)`` cameras on a circle looking at the origin (OpenGL convention), one time each."""
    poses = []
    for k in range(len(times)):
        angle = torch.tensor(2 * torch.pi * k / len(times))
        eye = torch.stack([distance * torch.cos(angle), distance * torch.sin(angle), torch.tensor(0.5)])
        back = eye / eye.norm()  # camera looks along -z, so +z points away from the origin
        right = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back), dim=0)
        up = torch.linalg.cross(back, right)
        poses.append(torch.stack([right, up, back, eye], dim=1))
    return Cameras(
        camera_to_worlds=torch.stack(poses), fx=float(size), fy=float(size), cx=size / 2, cy=size / 2,
        width=size, height=size, camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor(times, dtype=torch.float32)[:, None],
    )
