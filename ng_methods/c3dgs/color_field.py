"""C3DGS's colour field: hash grid at the (contracted) Gaussian centre + SH direction encoding -> MLP -> SH DC.

What the official code computes, reproduced here:

* positions: ``contract_to_unisphere(xyz.detach(), aabb=[-1, 1]^3)`` (MipNeRF-360 style contraction into [0, 1]^3;
  colour never moves the centres);
* hash grid: tiny-cuda-nn ``HashGrid`` semantics, 16 levels x 2 features, base resolution 16, per-level scale
  exactly 1.447 (our :class:`~ng_methods.encodings.grid.GridEncoding`);
* direction: tiny-cuda-nn ``SphericalHarmonics`` with ``degree=3`` (bands 0..2, 9 outputs). tcnn maps its input
  from [0, 1] to [-1, 1] (``2x - 1``) before evaluating the polynomials, while C3DGS feeds unit directions in
  [-1, 1]. The network therefore sees the SH polynomials evaluated at ``2d - 1`` (not a unit vector), and so do we:
  :func:`tcnn_sh_encoding` applies the same ``2d - 1``;
* MLP: 41 -> 64 -> 64 -> 3, ReLU, no biases (tcnn ``FullyFusedMLP``; fp16 there, fp32 here, fp16 in storage);
* the 3 outputs are used as the degree-0 SH coefficient: colour ``max(0.2821 * out + 0.5, 0)`` (gsplat, sh_degree=0).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ng_methods.encodings.grid import GridEncoding
from ng_methods.kernels.grid_encoding import Backend, GridSpec
from ng_methods.networks.tiny_mlp import TinyMLP

NUM_DIRECTION_FEATURES = 9


def contract_to_unisphere(positions: Float[Tensor, "*batch 3"], bound: float = 1.0) -> Float[Tensor, "*batch 3"]:
    """Map the box ``[-bound, bound]^3`` to the ball of radius 1 and everything else into the shell up to 2, then
    to ``[0, 1]^3``: ``x -> (2 - 1/|x|) x/|x|`` outside the unit ball, then ``x / 4 + 0.5`` (the official code)."""
    x = positions / bound
    magnitude = torch.linalg.norm(x, dim=-1, keepdim=True)
    outside = magnitude > 1
    safe = magnitude.clamp_min(1e-12)
    contracted = torch.where(outside, (2 - 1 / safe) * (x / safe), x)
    return contracted / 4 + 0.5


def tcnn_sh_encoding(directions: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 9"]:
    """tiny-cuda-nn's ``SphericalHarmonics`` encoding (degree 3 = 9 outputs) of the input C3DGS gives it.

    tcnn evaluates its real-SH polynomials at ``2 * input - 1`` (it expects inputs in [0, 1]); C3DGS passes unit
    directions, so the polynomials are evaluated at ``2d - 1``. We replicate that, not the textbook encoding.
    """
    x, y, z = (2 * directions - 1).unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * z * z - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (x * x - y * y),
        ],
        dim=-1,
    )


def c3dgs_grid_spec(log2_hashmap_size: int = 19, n_levels: int = 16, n_features_per_level: int = 2,
                    base_resolution: int = 16, per_level_scale: float = 1.447) -> GridSpec:
    """The colour hash grid of C3DGS (2^19 entries on real scenes, 2^16 on synthetic ones)."""
    return GridSpec(
        n_levels=n_levels, n_features_per_level=n_features_per_level, log2_hashmap_size=log2_hashmap_size,
        base_resolution=base_resolution, per_level_scale=per_level_scale, n_dims=3, grid_type="hash",
    )


class ColorField(nn.Module):
    """View-dependent colour of every Gaussian from its centre and the viewing direction (see module docstring)."""

    def __init__(self, spec: GridSpec, hidden_dim: int = 64, hidden_layers: int = 2, bound: float = 1.0,
                 backend: Backend = "auto") -> None:
        super().__init__()
        self.bound = bound
        self.grid = GridEncoding(spec, backend=backend)
        self.mlp = TinyMLP(spec.n_output_dims + NUM_DIRECTION_FEATURES, 3, hidden_dim, hidden_layers)

    def position_features(self, means: Float[Tensor, "n 3"]) -> Float[Tensor, "n f"]:
        """Hash-grid features at the contracted, detached centres."""
        return self.grid(contract_to_unisphere(means.detach(), self.bound))

    def from_features(self, features: Float[Tensor, "*batch f"],
                      directions: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
        """SH DC coefficients from precomputed position features and unit directions."""
        return self.mlp(torch.cat([features, tcnn_sh_encoding(directions)], dim=-1))

    def forward(self, means: Float[Tensor, "n 3"], camera_center: Float[Tensor, "3"]) -> Float[Tensor, "n 3"]:
        """SH DC coefficients for Gaussians seen from ``camera_center`` (direction = centre - camera, normalised)."""
        directions = torch.nn.functional.normalize(means - camera_center, dim=-1)
        return self.from_features(self.position_features(means), directions)
