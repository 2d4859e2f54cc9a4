"""Bake C3DGS's view-dependent colour field into per-Gaussian degree-3 SH (for standard 3DGS ``.ply`` files).

A standard 3DGS renderer shows ``max(SH(d) . c + 0.5, 0)``; C3DGS shows ``max(0.2821 * f(x, d) + 0.5, 0)``. For
every Gaussian we fit ``c`` (16 x 3) by least squares to ``0.2821 * f(x, d_k)`` over ``num_directions`` directions
spread evenly on the sphere (a Fibonacci lattice), with one shared pseudo-inverse of the ``[K, 16]`` SH basis
matrix (gsplat's basis and ordering). The fit is exact for colours that are SH of degree <= 3 in ``d`` and the
best degree-3 approximation otherwise (the MLP is not band-limited), so exported files are close to, not
identical with, the C3DGS render.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.c3dgs.color_field import ColorField
from ng_methods.splat.sh import SH_C0, num_sh_bases
from ng_methods.splat.sh import sh_basis as sh_basis_unit


def fibonacci_directions(count: int, device: torch.device | str = "cpu") -> Float[Tensor, "count 3"]:
    """``count`` unit vectors spread almost uniformly over the sphere."""
    index = torch.arange(count, dtype=torch.float64, device=device) + 0.5
    z = 1 - 2 * index / count
    radius = torch.sqrt((1 - z * z).clamp_min(0))
    phi = index * math.pi * (3 - math.sqrt(5))
    return torch.stack([radius * torch.cos(phi), radius * torch.sin(phi), z], dim=-1).float()


def sh_basis(directions: Float[Tensor, "k 3"], degree: int = 3) -> Float[Tensor, "k b"]:
    """Real SH basis values in gsplat's order (what its rasteriser multiplies the coefficients by)."""
    return sh_basis_unit(degree, torch.nn.functional.normalize(directions, dim=-1))


def fit_sh(values: Float[Tensor, "n k 3"], directions: Float[Tensor, "k 3"],
           degree: int = 3) -> Float[Tensor, "n b 3"]:
    """Least-squares SH coefficients ``c`` with ``basis(d_k) . c ~= values[:, k]`` for every row."""
    pseudo_inverse = torch.linalg.pinv(sh_basis(directions, degree).double()).to(values.dtype)  # [B, K]
    return torch.einsum("bk,nkc->nbc", pseudo_inverse, values)


@torch.no_grad()
def bake_color_field(field: ColorField, means: Float[Tensor, "n 3"], degree: int = 3, num_directions: int = 64,
                     chunk: int = 8192) -> Float[Tensor, "n b 3"]:
    """Degree-``degree`` SH coefficients (gsplat convention, DC first) reproducing the field's colour per Gaussian."""
    directions = fibonacci_directions(num_directions, means.device)
    pseudo_inverse = torch.linalg.pinv(sh_basis(directions, degree).double()).float()  # [B, K]
    out = []
    for start in range(0, means.shape[0], chunk):
        features = field.position_features(means[start : start + chunk])  # [n, F]
        n = features.shape[0]
        dc = field.from_features(
            features[:, None, :].expand(n, num_directions, features.shape[-1]),
            directions[None].expand(n, num_directions, 3),
        )  # [n, K, 3]: what C3DGS multiplies by SH_C0
        out.append(torch.einsum("bk,nkc->nbc", pseudo_inverse, SH_C0 * dc))
    if not out:
        return torch.zeros(0, num_sh_bases(degree), 3, device=means.device)
    return torch.cat(out, dim=0)
