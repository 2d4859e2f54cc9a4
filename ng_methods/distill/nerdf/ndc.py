"""Normalised device coordinates for forward-facing scenes (the student's input parameterisation only).

nerfstudio has no NDC rays. The official student (like vanilla NeRF on LLFF) works in NDC: rays are expressed in
LLFF's recentred world, where the average camera sits at the origin looking down -z, then mapped so that depth
from the near plane z = -1 to infinity becomes t in [0, 1] (``helpers.py:162-179``, ``nerdf_llff.py:113-115``).
Our dataparsers orient and centre worlds their own way, so :func:`average_camera_frame` rebuilds LLFF's frame from
the training cameras (``load_llff.py:161-167`` ``poses_avg``) and rays are moved into it first. The teacher still
renders the original world-space rays; only the student sees NDC.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

NDC_NEAR = 1.0
"""The near plane of the NDC projection (``ndc_rays(H, W, K[0][0], 1., ...)``, ``nerdf_llff.py:115``)."""


def average_camera_frame(camera_to_worlds: Float[Tensor, "n 3 4"]) -> Float[Tensor, "3 4"]:
    """LLFF's average pose: mean centre, z = normalised sum of z axes, x = up x z with up = sum of y axes."""
    centre = camera_to_worlds[:, :, 3].mean(0)
    z_axis = F.normalize(camera_to_worlds[:, :, 2].sum(0), dim=0)
    up = camera_to_worlds[:, :, 1].sum(0)
    x_axis = F.normalize(torch.linalg.cross(up, z_axis), dim=0)
    y_axis = F.normalize(torch.linalg.cross(z_axis, x_axis), dim=0)
    return torch.stack([x_axis, y_axis, z_axis, centre], dim=1)


def to_frame(
    frame: Float[Tensor, "3 4"], origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"]
) -> Tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
    """World rays expressed in the camera-like ``frame`` (its inverse applied)."""
    rotation, centre = frame[:, :3], frame[:, 3]
    return (origins - centre) @ rotation, directions @ rotation


def ndc_rays(
    origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], ndc_scale: Float[Tensor, "2"],
    near: float = NDC_NEAR,
) -> Tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
    """Standard NeRF NDC: shift origins to the plane z = -near, then project.

    ``ndc_scale`` is ``(2 fx / W, 2 fy / H)`` of the training cameras (the official ``1 / (W / (2 focal))``). The
    result does not depend on the length of ``directions``. A point at NDC depth t lies at ``o + t d``. Rays that
    never reach the near plane (``d_z >= 0``: looking away from the scene) have no NDC form; their ``d_z`` is
    clamped to -1e-6 so they stay finite instead of producing NaNs.
    """
    directions = torch.cat([directions[:, :2], directions[:, 2:].clamp(max=-1e-6)], dim=-1)
    shift = -(near + origins[:, 2]) / directions[:, 2]
    origins = origins + shift[:, None] * directions
    ox, oy, oz = origins.unbind(-1)
    dx, dy, dz = directions.unbind(-1)
    ndc_origins = torch.stack([-ndc_scale[0] * ox / oz, -ndc_scale[1] * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    ndc_directions = torch.stack(
        [-ndc_scale[0] * (dx / dz - ox / oz), -ndc_scale[1] * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1
    )
    return ndc_origins, ndc_directions


def ndc_depth_to_distance(
    t: Float[Tensor, "n samples"], origins: Float[Tensor, "n 3"], unit_directions: Float[Tensor, "n 3"],
    near: float = NDC_NEAR, max_t: float = 1.0 - 1e-4,
) -> Float[Tensor, "n samples"]:
    """Distance along the (frame-space) unit ray of the point at NDC depth ``t`` (clamped below 1 = infinity).

    With the origin shifted to z = -near by ``s0``, NDC depth t is reached after ``s = t * o'_z / (d_z (1 - t))``
    more (``t = 1 - o'_z / p_z``), so the distance from the camera is ``s0 + s``.
    """
    t = t.clamp(max=max_t)
    dz = unit_directions[:, 2:3].clamp(max=-1e-6)
    shift = -(near + origins[:, 2:3]) / dz
    return shift + t * (-near) / (dz * (1.0 - t))
