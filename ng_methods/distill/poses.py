"""Novel camera poses for distillation: where the teacher is rendered beyond the training views.

All poses are nerfstudio camera-to-world matrices ``[n, 3, 4]`` in the OpenGL convention (columns: right, up,
backward, position; the camera looks along ``-z``), in the dataparser's world frame, so the teacher renders them
directly. The two samplers follow the distillation papers' code (see ``docs/distillation.md`` for file:line):

- ``"sphere"`` (360-degree object scenes): MobileR2L's ``rand_360_poses`` / PVD-AL's ``get_rand_poses`` orbit
  poses: a random point on a spherical shell around the scene centre, radius uniform between the training
  cameras' smallest and largest distance to the centre, polar angle (from the up axis) a normal clipped to the
  training cameras' polar range, azimuth uniform; the camera looks at the centre with the training cameras' up.
- ``"forward_facing"`` (LLFF-style captures): MobileR2L's ``rand_FF_poses`` (NeRDF's ``get_rand_pose`` is the
  same with scale 1.0): position uniform in the training positions' bounding box grown by 1.1, viewing axis
  uniform in the bounding box of the training viewing axes grown by 1.1, up the mean training up vector.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

__all__ = [
    "FORWARD_FACING_BOX_SCALE",
    "FORWARD_FACING_MAX_ANGLE_DEG",
    "SceneKind",
    "infer_scene_kind",
    "novel_cameras",
    "sample_novel_poses",
    "scene_centre",
]

SceneKind = Literal["auto", "sphere", "forward_facing"]

FORWARD_FACING_BOX_SCALE = 1.1
"""Growth of the training bounding boxes the forward-facing poses are drawn from (MobileR2L ``rand_FF_poses``)."""
FORWARD_FACING_MAX_ANGLE_DEG = 45.0
"""A capture is forward-facing when every camera looks within this angle of the mean viewing direction."""
_MIN_POLAR = math.radians(1.0)
"""Keep orbit poses off the up axis, where look-at has no defined right vector (MobileR2L clips theta at 1 deg)."""


def _normalize(vectors: Tensor) -> Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-10)


def infer_scene_kind(camera_to_worlds: Float[Tensor, "n 3 4"]) -> Literal["sphere", "forward_facing"]:
    """``"forward_facing"`` when all cameras look roughly the same way (within 45 deg of their mean), else ``"sphere"``."""
    forward = _normalize(-camera_to_worlds[:, :3, 2].double())
    mean_forward = _normalize(forward.mean(0))
    cos_min = math.cos(math.radians(FORWARD_FACING_MAX_ANGLE_DEG))
    return "forward_facing" if bool((forward @ mean_forward).min() > cos_min) else "sphere"


def scene_centre(camera_to_worlds: Float[Tensor, "n 3 4"]) -> Float[Tensor, 3]:
    """The point nearest to all training optical axes (least squares; MobileR2L ``focus_point_fn``).

    Falls back to the mean camera position when the axes are (nearly) parallel.
    """
    c2w = camera_to_worlds.double()
    axes = _normalize(c2w[:, :3, 2])
    projectors = torch.eye(3, dtype=c2w.dtype) - axes[:, :, None] * axes[:, None, :]  # [n, 3, 3]
    lhs = projectors.mean(0)
    rhs = (projectors @ c2w[:, :3, 3:4]).mean(0)[:, 0]
    if torch.linalg.cond(lhs) > 1e6:
        return c2w[:, :3, 3].mean(0).to(camera_to_worlds.dtype)
    return torch.linalg.solve(lhs, rhs).to(camera_to_worlds.dtype)


def _look_at(positions: Tensor, target: Tensor, up: Tensor) -> Tensor:
    backward = _normalize(positions - target)  # OpenGL: the camera's +z points away from what it looks at
    right = _normalize(torch.cross(up.expand_as(backward), backward, dim=-1))
    true_up = torch.cross(backward, right, dim=-1)
    return torch.stack([right, true_up, backward, positions], dim=-1)


def _sphere_poses(train_poses: Tensor, count: int, generator: torch.Generator) -> Tensor:
    c2w = train_poses.double()
    centre = scene_centre(c2w)
    up = _normalize(c2w[:, :3, 1].mean(0))
    offsets = c2w[:, :3, 3] - centre
    radii = offsets.norm(dim=-1)
    polar = torch.acos((_normalize(offsets) @ up).clamp(-1.0, 1.0))
    low, high = polar.min().clamp(min=_MIN_POLAR), polar.max().clamp(max=math.pi - _MIN_POLAR)
    high = torch.maximum(low, high)
    # MobileR2L: a normal centred on the range with std half its width; draws outside it become uniform.
    theta = (low + high) / 2 + (high - low) / 2 * torch.randn(count, generator=generator, dtype=torch.float64)
    uniform = low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)
    theta = torch.where((theta < low) | (theta > high), uniform, theta)
    phi = (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1) * math.pi
    radius = radii.min() + (radii.max() - radii.min()) * torch.rand(count, generator=generator, dtype=torch.float64)
    # An orthonormal frame (e1, e2, up) around the up axis: azimuth phi is measured in the (e1, e2) plane.
    e1 = _normalize(offsets.mean(0) - (offsets.mean(0) @ up) * up)
    if e1.norm() < 0.5:  # cameras all around the up axis: any horizontal axis will do
        helper = torch.eye(3, dtype=c2w.dtype)[int(torch.argmin(up.abs()))]
        e1 = _normalize(helper - (helper @ up) * up)
    e2 = torch.cross(up, e1, dim=-1)
    direction = (torch.sin(theta) * torch.cos(phi))[:, None] * e1 + (torch.sin(theta) * torch.sin(phi))[:, None] * e2 \
        + torch.cos(theta)[:, None] * up
    positions = centre + radius[:, None] * direction
    return _look_at(positions, centre, up)


def _uniform_in_box(values: Tensor, count: int, generator: torch.Generator, scale: float) -> Tensor:
    """Uniform samples in the per-axis bounding box of ``values`` [n, 3], grown ``scale`` times about its middle."""
    low, high = values.min(0).values, values.max(0).values
    middle, half = (low + high) / 2, (high - low) * scale / 2
    return middle - half + 2 * half * torch.rand(count, 3, generator=generator, dtype=values.dtype)


def _forward_facing_poses(train_poses: Tensor, count: int, generator: torch.Generator) -> Tensor:
    c2w = train_poses.double()
    positions = _uniform_in_box(c2w[:, :3, 3], count, generator, FORWARD_FACING_BOX_SCALE)
    backward = _normalize(_uniform_in_box(c2w[:, :3, 2], count, generator, FORWARD_FACING_BOX_SCALE))
    up = _normalize(c2w[:, :3, 1].mean(0))
    right = _normalize(torch.cross(up.expand_as(backward), backward, dim=-1))
    true_up = torch.cross(backward, right, dim=-1)
    return torch.stack([right, true_up, backward, positions], dim=-1)


def _resolve(train_poses: Tensor, scene_kind: SceneKind) -> Literal["sphere", "forward_facing"]:
    if scene_kind == "auto":
        return infer_scene_kind(train_poses)
    if scene_kind not in ("sphere", "forward_facing"):
        raise ValueError(f"scene_kind must be 'auto', 'sphere' or 'forward_facing', got {scene_kind!r}")
    return scene_kind


def sample_novel_poses(train_poses: Float[Tensor, "n 3 4"], count: int, generator: torch.Generator,
                       scene_kind: SceneKind = "auto") -> Float[Tensor, "count 3 4"]:
    """``count`` random camera-to-world poses around the training poses (see the module docstring).

    Deterministic given the generator's state; all draws come from ``generator`` (a CPU generator).
    Returns poses with ``train_poses``' dtype and device.
    """
    if train_poses.ndim != 3 or train_poses.shape[1:] != (3, 4):
        raise ValueError(f"train_poses must have shape [n, 3, 4], got {tuple(train_poses.shape)}")
    cpu_poses = train_poses.detach().cpu()
    if _resolve(cpu_poses, scene_kind) == "sphere":
        poses = _sphere_poses(cpu_poses, count, generator)
    else:
        poses = _forward_facing_poses(cpu_poses, count, generator)
    return poses.to(dtype=train_poses.dtype, device=train_poses.device)


def novel_cameras(train_cameras: Cameras, count: int, generator: torch.Generator, scene_kind: SceneKind = "auto",
                  downscale: float = 1.0, source_indices: Optional[Tensor] = None) -> Cameras:
    """``count`` cameras at novel poses with the intrinsics of (random) training cameras, divided by ``downscale``.

    ``source_indices`` [count] picks whose intrinsics each novel camera copies (default: drawn from
    ``generator`` after the poses). Distortion is dropped: the teacher renders ideal pinhole images.
    """
    flat = train_cameras.flatten() if train_cameras.ndim > 1 else train_cameras
    poses = sample_novel_poses(flat.camera_to_worlds, count, generator, scene_kind)
    if source_indices is None:
        source_indices = torch.randint(len(flat), (count,), generator=generator)
    source = flat[source_indices.to(torch.long).cpu()]
    scale = 1.0 / downscale
    dtype = poses.dtype
    return Cameras(
        camera_to_worlds=poses,
        fx=(source.fx * scale).to(dtype), fy=(source.fy * scale).to(dtype),
        cx=(source.cx * scale).to(dtype), cy=(source.cy * scale).to(dtype),
        width=(source.width * scale).to(torch.int64), height=(source.height * scale).to(torch.int64),
        camera_type=source.camera_type,
    )
