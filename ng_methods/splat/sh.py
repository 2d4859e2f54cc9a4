"""Spherical-harmonics helpers shared by the splat methods (real SH, the 3DGS / gsplat basis and ordering).

Our own evaluation up to degree 4 (gsplat's PyTorch reference is private API), so it runs on any device."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 4
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)
SH_C4 = (2.5033429417967046, -1.7701307697799304, 0.9461746957575601, -0.6690465435572892, 0.10578554691520431,
         -0.6690465435572892, 0.47308734787878004, -1.7701307697799304, 0.6258357354491761)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients up to ``degree``: ``(degree + 1) ** 2``."""
    return (degree + 1) ** 2


def RGB2SH(rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """DC coefficient that renders colour ``rgb`` (gsplat adds 0.5 after evaluating SH)."""
    return (rgb - 0.5) / SH_C0


def SH2RGB(sh: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """Inverse of :func:`RGB2SH`."""
    return sh * SH_C0 + 0.5


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
