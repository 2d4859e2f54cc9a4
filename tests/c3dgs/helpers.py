"""A small C3DGS model and a camera, built without a dataset or trainer (for the unit tests)."""

from __future__ import annotations

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import SceneBox

from ng_methods.c3dgs.model import C3DGSModel, C3DGSModelConfig


def small_model(num_gaussians: int = 300, log2_hashmap_size: int = 10, seed: int = 0) -> C3DGSModel:
    """Random Gaussians in a cube of side 1.6, a small colour hash grid filled with values of a trained-like size."""
    torch.manual_seed(seed)
    config = C3DGSModelConfig(
        random_init=True, num_random=num_gaussians, random_scale=1.6, hash_log2_size=log2_hashmap_size,
        hash_levels=8, rasterizer_backend="torch", grid_backend="torch", background_color="black",
    )
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1,
                         seed_points=None)
    with torch.no_grad():
        model.color_field.grid.table.uniform_(-0.5, 0.5)
        model.gauss_params["opacities"].data = torch.logit(torch.rand(num_gaussians, 1) * 0.8 + 0.1)
    return model.eval()


def front_camera(size: int = 48, distance: float = 3.0) -> Cameras:
    """A pinhole camera on the +z axis looking at the origin (nerfstudio cameras look down -z)."""
    c2w = torch.eye(4)[:3]
    c2w[2, 3] = distance
    return Cameras(camera_to_worlds=c2w[None], fx=float(size), fy=float(size), cx=size / 2, cy=size / 2,
                   width=size, height=size)


def render_rgb(model: C3DGSModel, camera: Cameras) -> torch.Tensor:
    return model.get_outputs_for_camera(camera)["rgb"]
