"""Splatfacto-W background model: the appearance embedding -> MLP -> SH coefficients, evaluated per pixel ray.

The official ``BGField`` maps the 48-d embedding through two 128-wide ReLU layers to degree-4 SH (25 x 3
coefficients; base head + zero-initialised rest head) and evaluates them with ``gsplat.spherical_harmonics`` on
each pixel's ray direction, using degree ``min(step // (sh_degree_interval // 2), bg_sh_degree)`` (the official
``bg_sh_degree`` is 4, ``splatfactow_model.py:250`` @119a3bf, so all 25 coefficients are used from step 4000).
The result is used as the colour directly (no ``+0.5`` offset, unlike Gaussian colours) and composited as
``clamp(render + (1 - alpha) * background)``.

:func:`ng_methods.splat.sh.eval_sh` evaluates the SH (up to degree 4, gsplat's basis) on any device.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor, nn

from ng_methods.splat.sh import MAX_SH_DEGREE, eval_sh
from ng_methods.splatfacto_wild.appearance import SHHeadMLP


def pixel_ray_directions(camera: Cameras, height: int, width: int) -> Float[Tensor, "H W 3"]:
    """World-space unit ray directions through the pixel centres of a pinhole camera rendered at ``height x width``.

    The camera's intrinsics are for its own ``width x height``; they are scaled to the requested size (the
    resolution schedule renders at a fraction of it). Matches ``Cameras.generate_rays`` for pinhole cameras.
    """
    sx = width / float(camera.width.reshape(-1)[0])
    sy = height / float(camera.height.reshape(-1)[0])
    fx, fy = float(camera.fx.reshape(-1)[0]) * sx, float(camera.fy.reshape(-1)[0]) * sy
    cx, cy = float(camera.cx.reshape(-1)[0]) * sx, float(camera.cy.reshape(-1)[0]) * sy
    c2w = camera.camera_to_worlds.reshape(-1, 3, 4)[0]
    device, dtype = c2w.device, c2w.dtype
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    # OpenGL camera axes (nerfstudio): x right, y up, looking along -z.
    local = torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u)], dim=-1)
    return torch.nn.functional.normalize(local @ c2w[:, :3].T, dim=-1)


class BackgroundSHField(nn.Module):
    """Per-image sky / distant background: ``embedding -> MLP -> SH (degree 4)``, evaluated per pixel."""

    def __init__(self, embed_dim: int, hidden_dim: int = 128, num_layers: int = 2, sh_degree: int = MAX_SH_DEGREE):
        super().__init__()
        self.sh_degree = sh_degree
        self.mlp = SHHeadMLP(embed_dim, hidden_dim, num_layers, sh_degree)

    def coefficients(self, embedding: Float[Tensor, "E"]) -> Float[Tensor, "K 3"]:
        return self.mlp(embedding)

    def forward(
        self, embedding: Float[Tensor, "E"], directions: Float[Tensor, "*batch 3"], degree: int
    ) -> Float[Tensor, "*batch 3"]:
        """Background colour along ``directions`` (raw SH value, as in the official code; clamped when composited)."""
        degree = min(degree, self.sh_degree)
        coeffs = self.coefficients(embedding)
        flat = directions.reshape(-1, 3)
        colours = eval_sh(degree, flat, coeffs[None].expand(flat.shape[0], -1, -1))
        return colours.reshape(*directions.shape[:-1], 3)
