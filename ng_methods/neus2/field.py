"""NeuS2's network (``include/neural-graphics-primitives/nerf_network.h`` with ``GEOMETRY_INIT 1``).

* SDF network: ``[x - 0.5, grid(x)]`` (3 + L*F inputs; tcnn zero-pads to 32) -> 1x64 ReLU -> 16 outputs, bias
  free (tcnn ``FullyFusedMLP``). ``sdf = out[0] + sdf_bias`` (-0.1); all 16 outputs (raw SDF included) are the
  geometry feature. ``x`` is the unit-cube position (the scene box mapped to [0, 1]^3, NeuS2's NeRF space for DTU:
  ``tools/data_format_from_neus.py`` maps NeuS's [-1, 1] with scale 0.5 and offset 0.5, ``aabb_scale`` 1).
* Geometric init (the shipped ``utils/mlp_weights_hidden_layer_num_1_hidden_size_32.txt``, which we regenerate from
  its statistics rather than copy): first layer ``N(0, sqrt(2)/sqrt(64))`` on the 3 position inputs and 0 on the
  encoding; output layer ``N(sqrt(pi)/sqrt(64), 1e-5)`` on every output. With the bias this is a sphere of radius
  ~0.1 (unit-cube units) around the box centre.
* Colour network: ``[geometry feature (16), SH_4(d) (16), x (3), grad f (3)]`` (38 inputs, tcnn pads to 48) -> 2x64
  ReLU -> RGB with a sigmoid (``rgb_activation`` Logistic), bias free.
* Variance: one trainable scalar ``v`` (``TrainableBuffer``), initialised to 0.3; ``s = exp(10 v)``.

The hash grid (14 levels, 2 features, 2^19 rows, base 16, top 2048) is :class:`GridEncoding`; the progressive
level mask (:mod:`ng_methods.neus2.levels`) multiplies its output, so masked levels give zero features and zero
gradients. Gradients ``grad f`` are w.r.t. the unit-cube position (autograd with ``create_graph`` when training,
for the eikonal loss and the normal inputs of the colour network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Tuple

import torch
from jaxtyping import Float
from nerfstudio.utils.math import components_from_spherical_harmonics
from torch import Tensor, nn

from ng_methods.encodings.grid import GridEncoding
from ng_methods.kernels.grid_encoding.spec import GridSpec
from ng_methods.networks import TinyMLP
from ng_methods.neus2.levels import ProgressiveLevelsConfig, active_levels
from ng_methods.neus2.rendering import inv_s_from_variance


@dataclass
class NeuS2FieldConfig:
    """Encoding and network sizes of the NeuS2 field (``configs/nerf/dtu.json``)."""

    n_levels: int = 14
    """Hash-grid levels L."""
    n_features_per_level: int = 2
    """Features per level F."""
    log2_hashmap_size: int = 19
    """log2 of the rows per level T."""
    base_resolution: int = 16
    """Coarsest grid resolution."""
    top_resolution: float = 2048.0
    """Finest grid resolution (``top_resolution``; times ``aabb_scale`` = 1): sets the per-level scale."""
    encoding_backend: Literal["auto", "torch", "triton", "tcnn"] = "auto"
    """Grid-encoding implementation (``auto``: Triton on CUDA, PyTorch reference elsewhere)."""
    hidden_dim: int = 64
    """Width of both MLPs (``n_neurons``)."""
    sdf_hidden_layers: int = 1
    """Hidden layers of the SDF MLP (``network.n_hidden_layers``)."""
    color_hidden_layers: int = 2
    """Hidden layers of the colour MLP (``rgb_network.n_hidden_layers``)."""
    geometry_feature_dim: int = 16
    """SDF MLP outputs (the SDF and the geometry feature; tcnn's ``n_output_dims`` default 16)."""
    sdf_bias: float = -0.1
    """Added to the SDF output (``network.sdf_bias``)."""
    geometric_init: bool = True
    """Start from the sphere-like SDF of NeuS2's shipped initial SDF weights (``GEOMETRY_INIT 1``)."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the view direction (``dir_encoding``), degree**2 = 16 coefficients."""
    init_variance: float = 0.3
    """Initial learned variance ``v`` (s = exp(10 v))."""

    def grid_spec(self) -> GridSpec:
        """The hash grid, with the per-level scale that puts level L-1 at ``top_resolution`` (``testbed.cu``)."""
        growth = GridSpec.growth_factor(self.base_resolution, self.top_resolution, self.n_levels)
        return GridSpec(
            n_levels=self.n_levels,
            n_features_per_level=self.n_features_per_level,
            log2_hashmap_size=self.log2_hashmap_size,
            base_resolution=self.base_resolution,
            per_level_scale=growth,
            grid_type="hash",
        )


def geometric_init_(sdf_mlp: TinyMLP, n_position_inputs: int = 3) -> None:
    """NeuS2's initial SDF weights (see the module docstring) on a bias-free 1-hidden-layer ``TinyMLP``."""
    first, last = sdf_mlp.layers[0].weight, sdf_mlp.layers[-1].weight
    with torch.no_grad():
        first.zero_()
        first[:, :n_position_inputs].normal_(0.0, math.sqrt(2.0) / math.sqrt(first.shape[0]))
        last.normal_(math.sqrt(math.pi) / math.sqrt(last.shape[1]), 1e-5)


class NeuS2Field(nn.Module):
    """Hash-grid SDF, colour network and learned variance (see the module docstring).

    Args:
        config: sizes and initialisation.
        levels: the progressive level schedule (the mask is set by :meth:`set_step`).
    """

    def __init__(self, config: NeuS2FieldConfig, levels: ProgressiveLevelsConfig) -> None:
        super().__init__()
        self.config = config
        self.levels = levels
        self.encoding = GridEncoding(config.grid_spec(), backend=config.encoding_backend)
        self.sdf_mlp = TinyMLP(3 + self.encoding.n_output_dims, config.geometry_feature_dim, config.hidden_dim,
                               config.sdf_hidden_layers)
        if config.geometric_init:
            geometric_init_(self.sdf_mlp)
        color_inputs = config.geometry_feature_dim + config.sh_degree**2 + 3 + 3
        self.color_mlp = TinyMLP(color_inputs, 3, config.hidden_dim, config.color_hidden_layers)
        self.variance = nn.Parameter(torch.tensor(float(config.init_variance)))
        self.register_buffer("level_mask", torch.ones(self.encoding.n_output_dims))
        self.set_step(0)

    def set_step(self, step: int) -> None:
        """Apply the level mask of training step ``step`` (``levels.level_feature_mask``), filled in place on the
        buffer's device: no host-to-device copy, which would wait for the GPU every step."""
        active = active_levels(step, self.config.n_levels, self.levels) * self.config.n_features_per_level
        self.level_mask[:active] = 1.0
        self.level_mask[active:] = 0.0

    def inv_s(self) -> Float[Tensor, ""]:
        """The sharpness ``s = exp(10 v)``."""
        return inv_s_from_variance(self.variance)

    def sdf_network(self, unit: Float[Tensor, "n 3"]) -> Tuple[Float[Tensor, "n 1"], Float[Tensor, "n g"]]:
        """SDF (unit-cube units, bias included) and the geometry feature at unit-cube positions."""
        encoded = self.encoding(unit) * self.level_mask.to(unit.dtype)
        features = self.sdf_mlp(torch.cat([unit - 0.5, encoded.to(unit.dtype)], dim=-1))
        return features[:, :1] + self.config.sdf_bias, features

    def sdf_and_gradient(
        self, unit: Float[Tensor, "n 3"], create_graph: bool
    ) -> Tuple[Float[Tensor, "n 1"], Float[Tensor, "n g"], Float[Tensor, "n 3"]]:
        """SDF, geometry feature and ``d sdf / d unit`` (kept in the graph when ``create_graph``)."""
        with torch.enable_grad():
            points = unit.detach().requires_grad_(True)
            sdf, features = self.sdf_network(points)
            if points.shape[0] == 0:
                return sdf, features, torch.zeros_like(points)
            (gradient,) = torch.autograd.grad(sdf, points, torch.ones_like(sdf), create_graph=create_graph)
        return sdf, features, gradient

    def color(
        self,
        features: Float[Tensor, "n g"],
        directions: Float[Tensor, "n 3"],
        unit: Float[Tensor, "n 3"],
        gradient: Float[Tensor, "n 3"],
    ) -> Float[Tensor, "n 3"]:
        """RGB in [0, 1] from the geometry feature, the unit view direction, the position and the SDF gradient."""
        sh = components_from_spherical_harmonics(levels=self.config.sh_degree, directions=directions)
        inputs = torch.cat([features, sh.to(features.dtype), unit.to(features.dtype), gradient], dim=-1)
        return torch.sigmoid(self.color_mlp(inputs))
