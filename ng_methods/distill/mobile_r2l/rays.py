"""Ray images for the MobileR2L student: low-resolution rays, 8 points per ray, positional embedding.

Follows ``data/rays_utils.py`` of snap-research/MobileR2L @4f8929e:

- **Rays** (``get_ray_directions``, rays_utils.py:131-158; ``get_rays``, :162-180): one ray per low-resolution
  pixel centre, camera-space direction ``((u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -1)`` (OpenGL, *not*
  normalised, so a point at parameter ``z`` lies at depth ``z`` in front of the camera), rotated to the world.
  The low-resolution intrinsics are the full-resolution ones divided by the super-resolution factor, so low-res
  pixel ``i`` is the ray through the centre of the ``f x f`` block of full-res pixels it is upsampled into.
- **Points** (``PointSampler.sample``, :42-74): ``n`` depths ``near * (1 - t) + far * t`` with ``t`` evenly spaced
  in [0, 1]; while training each depth is jittered inside its bin (one jitter per pixel, shared by the images of
  the batch, as the official ``t_rand`` of shape ``[H * W, n_sample]``), at test time the even depths are used.
- **NDC** for forward-facing scenes (``_to_ndc``, :76-106, near plane 1): applied to the rays *before* the points
  are placed, with ``near = 0, far = 1`` (data_utils.py:53-54). The official scenes live in LLFF's recentred world
  (the average camera is the identity, nearest depth 1 / 0.75); we express rays in the frame of the average
  training camera (LLFF's ``poses_avg``) and scale it so that the NDC near plane sits at ``ndc_near``.
- **Embedding** (``PositionalEmbedder``, :110-127): per coordinate ``sin(2^k x), cos(2^k x)`` for k = 0..L-1, then
  ``x`` itself: ``[sin x 6, cos x 6, x]`` = 13 values per coordinate, 24 coordinates per ray (8 points x xyz,
  point-major) -> 312 channels, laid out as an image ``[B, 312, h, w]`` (engine.py:249-253).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.distill.encoding import embed_points

__all__ = [
    "average_camera_frame",
    "camera_rays",
    "embed_points",
    "ndc_rays",
    "ray_image",
    "sample_depths",
    "to_frame",
]


def camera_rays(
    camera_to_worlds: Float[Tensor, "b 3 4"],
    intrinsics: Float[Tensor, "b 4"],
    height: int,
    width: int,
) -> Tuple[Float[Tensor, "b h w 3"], Float[Tensor, "b h w 3"]]:
    """Origins and (unnormalised, camera-z = -1) directions of a ``height x width`` pixel grid per camera.

    ``intrinsics`` holds ``(fx, fy, cx, cy)`` of that grid (already divided by the super-resolution factor).
    """
    device, dtype = camera_to_worlds.device, camera_to_worlds.dtype
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    fx, fy, cx, cy = (intrinsics[:, i, None, None] for i in range(4))
    directions = torch.stack(
        [(u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -torch.ones_like(u).expand_as(fx * u)], dim=-1
    )  # [b, h, w, 3]
    rays_d = torch.einsum("bij,bhwj->bhwi", camera_to_worlds[:, :, :3], directions)
    rays_o = camera_to_worlds[:, None, None, :, 3].expand_as(rays_d)
    return rays_o, rays_d


def average_camera_frame(camera_to_worlds: Float[Tensor, "n 3 4"]) -> Float[Tensor, "3 4"]:
    """LLFF's ``poses_avg``: mean position, mean backward (z) axis, mean up (y) axis, re-orthonormalised."""
    center = camera_to_worlds[:, :, 3].mean(0)
    backward = torch.nn.functional.normalize(camera_to_worlds[:, :, 2].sum(0), dim=0)
    up = camera_to_worlds[:, :, 1].sum(0)
    right = torch.nn.functional.normalize(torch.linalg.cross(up, backward), dim=0)
    up = torch.linalg.cross(backward, right)
    return torch.stack([right, up, backward, center], dim=1)


def to_frame(
    rays_o: Float[Tensor, "*bs 3"], rays_d: Float[Tensor, "*bs 3"], frame: Float[Tensor, "3 4"], scale: float
) -> Tuple[Float[Tensor, "*bs 3"], Float[Tensor, "*bs 3"]]:
    """Express rays in ``frame`` (a camera-to-world pose) with lengths multiplied by ``scale``."""
    rotation, center = frame[:, :3], frame[:, 3]
    origins = (rays_o - center) @ rotation * scale
    directions = rays_d @ rotation * scale
    return origins, directions


def ndc_rays(
    rays_o: Float[Tensor, "*bs 3"], rays_d: Float[Tensor, "*bs 3"], focal_over_width: Tensor,
    focal_over_height: Tensor, near: float = 1.0,
) -> Tuple[Float[Tensor, "*bs 3"], Float[Tensor, "*bs 3"]]:
    """rays_utils.py:76-106 (NeRF's ``ndc_rays``): shift origins to the plane z = -near, then project.

    ``focal_over_width`` / ``focal_over_height`` (``fx / W``, ``fy / H``, broadcastable to ``*bs``) do not depend on
    the image resolution.
    """
    t = -(near + rays_o[..., 2]) / rays_d[..., 2]
    rays_o = rays_o + t[..., None] * rays_d
    ox, oy, oz = rays_o.unbind(-1)
    dx, dy, dz = rays_d.unbind(-1)
    sx, sy = -2.0 * focal_over_width, -2.0 * focal_over_height
    origins = torch.stack([sx * ox / oz, sy * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    directions = torch.stack([sx * (dx / dz - ox / oz), sy * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1)
    return origins, directions


def sample_depths(
    near: float, far: float, count: int, height: int, width: int, generator: Optional[torch.Generator],
    perturb: bool, device: torch.device,
) -> Float[Tensor, "h w n"]:
    """Depths of the points of every pixel: even in [near, far], jittered inside their bins when ``perturb``."""
    t = torch.linspace(0.0, 1.0, count, device=device)
    z = (near * (1 - t) + far * t).expand(height, width, count)
    if not perturb:
        return z
    mids = 0.5 * (z[..., 1:] + z[..., :-1])
    upper = torch.cat([mids, z[..., -1:]], dim=-1)
    lower = torch.cat([z[..., :1], mids], dim=-1)
    jitter = torch.rand(z.shape, generator=generator, device=device if generator is None else generator.device)
    return lower + (upper - lower) * jitter.to(device)


def ray_image(
    rays_o: Float[Tensor, "b h w 3"], rays_d: Float[Tensor, "b h w 3"], depths: Float[Tensor, "h w n"],
    frequencies: int,
) -> Float[Tensor, "b c h w"]:
    """Points ``o + z d`` (point-major xyz), embedded, as a channels-first image: ``c = 3 n (2 L + 1)``."""
    points = rays_o[..., None, :] + rays_d[..., None, :] * depths[None, ..., None]  # [b, h, w, n, 3]
    embedded = embed_points(points.flatten(-2), frequencies)  # [b, h, w, c]
    return embedded.permute(0, 3, 1, 2).contiguous()
