"""Splatfacto-W background model: the appearance embedding -> MLP -> SH coefficients, evaluated per pixel ray.

The official ``BGField`` maps the 48-d embedding through two 128-wide ReLU layers to degree-4 SH (25 x 3
coefficients; base head + zero-initialised rest head) and evaluates them with ``gsplat.spherical_harmonics`` on
each pixel's ray direction, using degree ``min(step // (sh_degree_interval // 2), bg_sh_degree)`` (the official
``bg_sh_degree`` is 3, so the degree-4 coefficients exist but are never used by default). The result is used as
the colour directly (no ``+0.5`` offset, unlike Gaussian colours) and composited as
``clamp(render + (1 - alpha) * background)``.

:func:`eval_sh` is our own real-SH evaluation up to degree 4 in the 3DGS / gsplat basis and ordering (gsplat's
CUDA kernel supports degree 4 too; its PyTorch reference is private API), so it runs on any device.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor, nn

from ng_methods.splat.sh import SH_C0, num_sh_bases
from ng_methods.splatfacto_wild.appearance import SHHeadMLP

MAX_SH_DEGREE = 4
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)
SH_C4 = (2.5033429417967046, -1.7701307697799304, 0.9461746957575601, -0.6690465435572892, 0.10578554691520431,
         -0.6690465435572892, 0.47308734787878004, -1.7701307697799304, 0.6258357354491761)


def sh_basis(degree: int, dirs: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch K"]:
    """Real SH basis functions up to ``degree`` (0..4) at unit directions, ``K = (degree + 1) ** 2``."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        bases += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        bases += [
            SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy), SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    if degree >= 4:
        bases += [
            SH_C4[0] * xy * (xx - yy), SH_C4[1] * yz * (3 * xx - yy), SH_C4[2] * xy * (7 * zz - 1),
            SH_C4[3] * yz * (7 * zz - 3), SH_C4[4] * (zz * (35 * zz - 30) + 3), SH_C4[5] * xz * (7 * zz - 3),
            SH_C4[6] * (xx - yy) * (7 * zz - 1), SH_C4[7] * xz * (xx - 3 * yy),
            SH_C4[8] * (xx * (xx - 3 * yy) - yy * (3 * xx - yy)),
        ]
    return torch.stack(bases, dim=-1)


def eval_sh(
    degree: int, dirs: Float[Tensor, "*batch 3"], coeffs: Float[Tensor, "*batch K 3"]
) -> Float[Tensor, "*batch 3"]:
    """``sum_k basis_k(dir) * coeffs_k`` over the first ``(degree+1)^2`` coefficients (dirs are normalised here)."""
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    num = num_sh_bases(degree)
    return (sh_basis(degree, dirs)[..., None] * coeffs[..., :num, :]).sum(dim=-2)


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
