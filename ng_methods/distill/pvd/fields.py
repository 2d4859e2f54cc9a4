"""Student fields: the official ``mlp`` NeRF body on the Instant-NGP heads, grid fields, and TensoRF VM."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding, TensorVMEncoding
from nerfstudio.field_components.spatial_distortions import SpatialDistortion
from nerfstudio.fields.tensorf_field import TensoRFField
from torch import Tensor, nn

from ng_methods.ngpc.field import NGPCField, NGPCFieldConfig

StudentKind = Literal["mlp", "hashgrid", "densegrid", "lowres-densegrid", "vm"]


@dataclass
class MLPNeRFConfig:
    """The official ``mlp`` student body (``--PE 10 --nerf_layer_num 8 --nerf_layer_wide 256 --skip 3``)."""

    num_frequencies: int = 10
    """Positional-encoding frequencies (the input itself is kept, torch-ngp's ``FreqEncoder``: 3 + 3*2*10 = 63)."""
    num_layers: int = 8
    """Linear layers of the body, the last one projecting to ``output_dim``."""
    width: int = 256
    """Hidden width."""
    skip_after: int = 3
    """0-based index of the layer after whose output the encoded input is concatenated (NeRF's skip at layer 4)."""
    output_dim: int = 32
    """Body output = input of the density head; the official code uses its hash encoder's width (14 levels x 2)."""


class MLPNeRFEncoding(nn.Module):
    """Positional encoding and a ReLU MLP with one skip connection, replacing the grid encoding of an NGPC field.

    Positions arrive in the unit cube (the field's normalisation) and are mapped to ``[-1, 1]`` first, the box the
    official MLP sees (``bound = 1``).
    """

    def __init__(self, config: MLPNeRFConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("frequencies", 2.0 ** torch.arange(config.num_frequencies, dtype=torch.float32))
        in_dim = 3 + 6 * config.num_frequencies
        dims_in = [in_dim] + [config.width + (in_dim if i - 1 == config.skip_after else 0)
                              for i in range(1, config.num_layers)]
        dims_out = [config.width] * (config.num_layers - 1) + [config.output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))

    @property
    def n_output_dims(self) -> int:
        return self.config.output_dim

    def encode(self, unit: Float[Tensor, "n 3"]) -> Float[Tensor, "n e"]:
        """``[x, sin(2^k x), cos(2^k x)]`` of ``x = 2 * unit - 1``."""
        x = unit * 2.0 - 1.0
        scaled = x[..., None, :] * self.frequencies[:, None]
        return torch.cat([x, torch.sin(scaled).flatten(-2), torch.cos(scaled).flatten(-2)], dim=-1)

    def forward(self, unit: Float[Tensor, "n 3"]) -> Float[Tensor, "n f"]:
        encoded = self.encode(unit)
        h = encoded
        for index, layer in enumerate(self.layers):
            h = layer(h)
            if index < len(self.layers) - 1:
                h = torch.relu(h)
            if index == self.config.skip_after and index < len(self.layers) - 1:
                h = torch.cat([encoded, h], dim=-1)
        return h


class MLPNeRFField(NGPCField):
    """NGPC field whose grid encoding is the NeRF MLP body: same density/colour heads as the hash teacher."""

    def __init__(self, config: NGPCFieldConfig, mlp: MLPNeRFConfig, aabb: Float[Tensor, "2 3"],
                 spatial_distortion: Optional[SpatialDistortion]) -> None:
        # the body is not a grid: never the fused grid + MLP kernel
        super().__init__(dataclasses.replace(config, fused_density_network=False), aabb, spatial_distortion)
        self.encoding = MLPNeRFEncoding(mlp)
        self.density_mlp.layers[0] = nn.Linear(mlp.output_dim, config.hidden_dim, bias=False)
        nn.init.kaiming_uniform_(self.density_mlp.layers[0].weight, nonlinearity="relu")


@dataclass
class VMConfig:
    """TensoRF VM student (official ``vm``: density rank 16, colour rank 48 per plane, 15 colour features)."""

    resolution: int = 300
    """Grid resolution per axis (official ``--resolution0 300``; no upsampling, ``--upsample_model_steps`` 1e10)."""
    density_components: int = 16
    """Density rank per plane/line pair."""
    color_components: int = 48
    """Colour rank per plane/line pair."""
    appearance_dim: int = 15
    """Colour features after the basis matrix (official ``color_feat_dim = 15``)."""
    init_scale: float = 0.1
    """Std of the factors' normal initialisation (official ``init_one_vm(scale=0.1)``)."""


def build_tensorf_field(config: VMConfig, aabb: Float[Tensor, "2 3"]) -> TensoRFField:
    """nerfstudio's ``TensoRFField`` with the official VM sizes (its CPU path is plain ``grid_sample``)."""
    density = TensorVMEncoding(config.resolution, config.density_components, config.init_scale)
    color = TensorVMEncoding(config.resolution, config.color_components, config.init_scale)
    # nerfstudio's TensoRF head encodings (2 frequencies each), sized to the appearance features.
    features = NeRFEncoding(config.appearance_dim, num_frequencies=2, min_freq_exp=0, max_freq_exp=2)
    directions = NeRFEncoding(3, num_frequencies=2, min_freq_exp=0, max_freq_exp=2)
    return TensoRFField(aabb, feature_encoding=features, direction_encoding=directions, density_encoding=density,
                        color_encoding=color, appearance_dim=config.appearance_dim)


def build_student_field(kind: StudentKind, grid: NGPCFieldConfig, mlp: MLPNeRFConfig, vm: VMConfig,
                        aabb: Float[Tensor, "2 3"], spatial_distortion: Optional[SpatialDistortion]) -> nn.Module:
    """The student field of one architecture."""
    if kind == "mlp":
        return MLPNeRFField(grid, mlp, aabb, spatial_distortion)
    if kind == "vm":
        if spatial_distortion is not None:
            raise ValueError("The VM (TensoRF) student supports bounded scenes only; use another student for "
                             "scenes with scene contraction.")
        return build_tensorf_field(vm, aabb)
    return NGPCField(NGPCFieldConfig(**{**grid.__dict__, "encoding": kind}), aabb, spatial_distortion)
