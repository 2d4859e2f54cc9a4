"""Spherical-harmonics helpers shared by the splat methods (real SH, the 3DGS / gsplat basis and ordering)."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

SH_C0 = 0.28209479177387814


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients up to ``degree``: ``(degree + 1) ** 2``."""
    return (degree + 1) ** 2


def RGB2SH(rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """DC coefficient that renders colour ``rgb`` (gsplat adds 0.5 after evaluating SH)."""
    return (rgb - 0.5) / SH_C0


def SH2RGB(sh: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """Inverse of :func:`RGB2SH`."""
    return sh * SH_C0 + 0.5
