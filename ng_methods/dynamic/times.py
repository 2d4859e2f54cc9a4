"""Reading capture times off nerfstudio ``Cameras`` (``None`` when the data has no time)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

__all__ = ["camera_time", "camera_times", "has_time"]


def has_time(cameras: Cameras) -> bool:
    """Whether ``cameras`` carry capture times."""
    return cameras.times is not None


def camera_times(cameras: Cameras, default: float = 0.0) -> Float[Tensor, "num_cameras"]:
    """The capture time of every camera (flattened), or ``default`` for all when the cameras have no times."""
    num = int(torch.Size(cameras.shape).numel())
    if cameras.times is None:
        return torch.full((num,), float(default), device=cameras.device)
    return cameras.times.reshape(-1).to(torch.float32)


def camera_time(camera: Cameras, default: float = 0.0) -> float:
    """The capture time of a single camera (``Cameras`` of shape ``[]`` or ``[1]``), ``default`` when missing."""
    times = camera_times(camera, default)
    if times.numel() != 1:
        raise ValueError(f"camera_time needs a single camera, got cameras of shape {tuple(camera.shape)}")
    return float(times[0])
