"""Instant-NGP radiance field on a configurable grid encoding (hash grid, multi-res dense grid, low-res dense grid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.spatial_distortions import SpatialDistortion
from nerfstudio.fields.base_field import Field
from nerfstudio.utils.math import components_from_spherical_harmonics
from torch import Tensor

from ng_methods.encodings.grid import GridEncoding
from ng_methods.kernels import fused_mlp
from ng_methods.kernels.grid_encoding.spec import (
    GridSpec,
    hashgrid_spec,
    lowres_densegrid_spec,
    multires_densegrid_spec,
)
from ng_methods.networks import TinyMLP

EncodingName = Literal["hashgrid", "densegrid", "lowres-densegrid"]


@dataclass
class NGPCFieldConfig:
    """Encoding and network sizes of the NGPC radiance field (Instant-NGP's NeRF network by default)."""

    encoding: EncodingName = "hashgrid"
    """Input encoding: multi-resolution hash grid, multi-resolution dense grid, or low-resolution dense grid."""
    log2_hashmap_size: int = 19
    """log2 of the hash table size per level (hash grid only)."""
    max_resolution: float = 2048.0
    """Finest hash-grid resolution N_max for a unit scene bound; scaled by the scene bound (Instant-NGP: 2048*bound)."""
    encoding_backend: Literal["auto", "torch", "triton", "tcnn"] = "auto"
    """Grid-encoding implementation; ``auto`` picks the fastest available for the device."""
    hidden_dim: int = 64
    """Width of both MLPs."""
    density_hidden_layers: int = 1
    """Hidden layers of the density MLP."""
    color_hidden_layers: int = 2
    """Hidden layers of the colour MLP."""
    density_output_dim: int = 16
    """Density MLP outputs: one density logit and the geometry features fed (with it) to the colour MLP."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the direction encoding (degree**2 coefficients)."""
    fused_density_network: bool = True
    """On a GPU with Triton, run grid encoding + density MLP as one fused kernel (same function, fewer launches)."""

    def grid_spec(self, scene_bound: float) -> GridSpec:
        if self.encoding == "hashgrid":
            spec = hashgrid_spec(bound=1.0, log2_hashmap_size=self.log2_hashmap_size)
            growth = GridSpec.growth_factor(spec.base_resolution, self.max_resolution * scene_bound, spec.n_levels)
            return GridSpec(**{**spec.__dict__, "per_level_scale": growth})
        if self.encoding == "densegrid":
            return multires_densegrid_spec()
        return lowres_densegrid_spec()


class NGPCField(Field):
    """Density from ``grid -> TinyMLP``, colour from ``[SH(dir), density features] -> TinyMLP -> sigmoid``.

    Args:
        config: encoding and network sizes.
        aabb: scene box ``[2, 3]``; positions are normalised to ``[0, 1]^3`` with it.
        spatial_distortion: scene contraction for unbounded captures (maps space into ``[-2, 2]^3``), or None.
    """

    def __init__(
        self, config: NGPCFieldConfig, aabb: Float[Tensor, "2 3"], spatial_distortion: Optional[SpatialDistortion]
    ) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("aabb", aabb.clone().float())
        self.spatial_distortion = spatial_distortion
        bound = float((aabb[1] - aabb[0]).max() / 2) if spatial_distortion is None else 2.0
        self.encoding = GridEncoding(config.grid_spec(bound), backend=config.encoding_backend)
        self.density_mlp = TinyMLP(
            self.encoding.n_output_dims, config.density_output_dim, config.hidden_dim, config.density_hidden_layers
        )
        self.color_mlp = TinyMLP(
            config.sh_degree**2 + config.density_output_dim, 3, config.hidden_dim, config.color_hidden_layers
        )

    def normalize_positions(
        self, positions: Float[Tensor, "*batch 3"]
    ) -> Tuple[Float[Tensor, "*batch 3"], Float[Tensor, "*batch"]]:
        """Map world positions to the encoding's unit cube; also return whether they lie inside it."""
        if self.spatial_distortion is not None:
            unit = (self.spatial_distortion(positions) + 2.0) / 4.0
        else:
            unit = (positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((unit >= 0.0) & (unit <= 1.0)).all(dim=-1)
        return unit, inside

    def _density_and_features(
        self, positions: Float[Tensor, "*batch 3"]
    ) -> Tuple[Float[Tensor, "*batch 1"], Float[Tensor, "*batch f"]]:
        unit, inside = self.normalize_positions(positions)
        flat_unit = unit.clamp(0.0, 1.0).reshape(-1, 3)
        features = self._density_network(flat_unit).reshape(*unit.shape[:-1], self.density_mlp.out_dim)
        density = trunc_exp(features[..., :1]) * inside[..., None].to(features.dtype)
        return density, features

    def _density_network(self, unit: Float[Tensor, "n 3"]) -> Float[Tensor, "n f"]:
        """``density_mlp(encoding(unit))``, fused into one kernel where that is possible."""
        use_fused = (
            self.config.fused_density_network
            and self.encoding.backend in ("auto", "triton")
            and fused_mlp.resolve_backend("auto", unit.device) == "triton"
        )
        if use_fused:
            weights = [layer.weight for layer in self.density_mlp.layers]
            return fused_mlp.encode_and_mlp(unit, self.encoding.table, self.encoding.spec, weights, backend="triton")
        return self.density_mlp(self.encoding(unit))

    def density_fn(
        self, positions: Float[Tensor, "*batch 3"], times: Optional[Tensor] = None
    ) -> Float[Tensor, "*batch 1"]:
        """Density at world positions (used by the occupancy grid and the sampler)."""
        return self._density_and_features(positions)[0]

    def get_density(self, ray_samples: RaySamples) -> Tuple[Tensor, Tensor]:
        return self._density_and_features(ray_samples.frustums.get_positions())

    def get_outputs(
        self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None
    ) -> Dict[FieldHeadNames, Tensor]:
        assert density_embedding is not None
        directions = ray_samples.frustums.directions
        sh = components_from_spherical_harmonics(levels=self.config.sh_degree, directions=directions)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([sh, density_embedding], dim=-1)))
        return {FieldHeadNames.RGB: rgb}
